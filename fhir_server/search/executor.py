"""Execute a SearchRequest: keyset paging on signed cursors, sorting, _include/_revinclude, totals."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from ..errors import BadRequest
from .conditions import ConditionBuilder
from .parse import SearchRequest
from .plan import KeyPlan

_STR_MAX, _STR_MIN = "\U0010ffff", ""


@dataclass
class SearchPage:
    """One page of matches (stored JSON text) plus included resources and paging cursors."""

    matches: list[tuple[str, str, str]]  # (type, id, text)
    pks: list[int] = field(default_factory=list)
    included: list[tuple[str, str, str]] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    prev_cursor: str | None = None


class CursorCodec:
    """Opaque, HMAC-signed paging cursors so clients cannot forge positions."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def encode(self, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        sig = hmac.new(self.secret, raw, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(sig + raw).decode().rstrip("=")

    def decode(self, token: str) -> dict[str, Any]:
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            sig, raw = blob[:12], blob[12:]
            if not hmac.compare_digest(sig, hmac.new(self.secret, raw, hashlib.sha256).digest()[:12]):
                raise ValueError("signature")
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("shape")
            return data
        except (ValueError, TypeError):
            raise BadRequest("The paging cursor is invalid or was not issued by this server") from None


class SearchExecutor:
    """Runs searches inside a session with a condition builder and cursor codec."""

    def __init__(self, session: Session, builder: ConditionBuilder, codec: CursorCodec) -> None:
        self.s = session
        self.builder = builder
        self.codec = codec

    def run(self, req: SearchRequest, extra: list[ColumnElement[bool]], types: list[str] | None = None,
            extra_driven: bool = False) -> SearchPage:
        """One page; `extra_driven` says an extra condition (the compartment) already selects by key."""
        plan = KeyPlan.build(self.builder, req, extra, types, extra_driven)
        total = None
        if req.summary == "count" or req.total == "accurate":
            total = self.s.execute(plan.count()).scalar_one()
        if req.summary == "count" or req.count == 0:
            return SearchPage(matches=[], total=total)
        backwards, position = False, None
        if req.cursor:
            cur = self.codec.decode(req.cursor)
            if cur.get("q") != self._fingerprint(req):
                raise BadRequest("The paging cursor belongs to a different search")
            backwards, position = cur.get("d") == "p", cur.get("k")
        rows = list(self.s.execute(plan.page(req.count + 1, position, backwards)).all())
        more = len(rows) > req.count
        rows = rows[:req.count]
        if backwards:
            rows.reverse()
        page = SearchPage(matches=[(r[1], r[2], r[3]) for r in rows], pks=[r[0] for r in rows], total=total)
        if rows:
            fp = self._fingerprint(req)
            first, last = rows[0], rows[-1]
            if (more and not backwards) or (backwards and req.cursor):
                page.next_cursor = self.codec.encode({"q": fp, "d": "n", "k": list(last[4:]) + [last[0]]})
            if (req.cursor and not backwards) or (backwards and more):
                page.prev_cursor = self.codec.encode({"q": fp, "d": "p", "k": list(first[4:]) + [first[0]]})
        if page.total is None and not req.cursor and not more:
            page.total = len(rows)
        return page

    def keyset(self, plan: KeyPlan, limit: int, after: list[Any] | None) -> list[Any]:
        """Up to `limit` (pk, type, id, text, ...) rows of a plan after a key position, in order (bulk export)."""
        return list(self.s.execute(plan.page(limit, after)).all())

    @staticmethod
    def _fingerprint(req: SearchRequest) -> str:
        crit = [(c.name, c.modifier, c.values, repr(c.chain), repr(c.has)) for c in req.criteria]
        blob = json.dumps([req.resource_type, crit, req.sort], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
