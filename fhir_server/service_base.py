"""What every FHIR service operation stands on: stored versions, units of work, the audit hooks, id checks."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .access import AccessContext
from .errors import Conflict, NotFound
from .guard import Guard
from .indexing import Extractor
from .models import ResourceRow
from .repository import Repository
from .search import CursorCodec
from .search_sql import ConditionBuilder
from .tables import resource_types
from .validation import is_valid_id

# (caller, action, type, resources touched, succeeded, the patients they belong to when the caller knows them)
AuditHook = Callable[[AccessContext, str, str, list[str], bool, "Iterable[str] | None"], None]


@dataclass
class Stored:
    """A resource version as stored: the JSON text is served as is."""

    resource_type: str
    id: str
    version: int
    last_updated: str
    text: str

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    def json(self) -> dict[str, Any]:
        return json.loads(self.text)  # type: ignore[no-any-return]


@dataclass
class WriteResult:
    stored: Stored
    created: bool
    patients: set[str] = field(default_factory=set)  # whose compartment the written resource is in


def _same_resource_written(exc: IntegrityError) -> bool:
    """A unique violation of a resource's id or of its version number: a concurrent write of the same resource."""
    text = str(exc.orig)
    return any(name in text for name in ("uq_fhir_version", "uq_fhir_resource_type_id", "fhir_version.res_pk",
                                         "fhir_resource.res_type"))


class ServiceBase:
    """State and helpers shared by the operations of FhirService (kept apart to keep modules small)."""

    def __init__(self, sessions: sessionmaker[Session], base_url: str, secret: bytes,
                 audit: AuditHook | None = None) -> None:
        self.sessions = sessions
        self.engine: Engine = sessions.kw["bind"]
        self.base_url = base_url.rstrip("/")
        self.extractor = Extractor(self.base_url)
        self.builder = ConditionBuilder(self.base_url)
        self.guard = Guard(self.builder, self.extractor)
        self.codec = CursorCodec(secret)
        self.audit = audit
        self.settle: Callable[[], object] | None = None  # writes queued AuditEvents (AuditLog.flush)

    @contextmanager
    def unit(self, write: bool = False) -> Iterator[Repository]:
        """One atomic unit of work: commit on success, roll back on any error."""
        with self.sessions() as session:
            session.connection(execution_options={"write": write})
            try:
                repo = Repository(session, self.extractor)
                yield repo
                repo.flush_index()
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                if _same_resource_written(exc):  # PostgreSQL: two writers read the same current version
                    raise Conflict("The resource was changed by another request at the same moment; nothing was "
                                   "changed. Read it again and retry") from exc
                raise
            except BaseException:
                session.rollback()
                raise

    def _audit(self, ctx: AccessContext, action: str, rtype: str, refs: list[str], ok: bool = True,
               patients: Iterable[str] | None = None) -> None:
        """One access record per interaction of a person or app (the audit log splits it per patient)."""
        if self.audit is not None and not ctx.trusted:
            self.audit(ctx, action, rtype, refs, ok, patients)

    def settle_audit(self, rtype: str | None, items: Iterable[tuple[str, str]] = ()) -> None:
        """Before AuditEvents are read (by type, across types or included), the queued ones are written."""
        if self.settle is None:
            return
        if rtype in (None, "AuditEvent") or any(
                "AuditEvent" in v for k, v in items if k.startswith(("_include", "_revinclude", "_has"))):
            self.settle()

    # ---- helpers ----
    @staticmethod
    def _check_type(rtype: str, fid: str | None = None) -> None:
        """404 for an unknown type, or an id no resource can have (never sent to the database)."""
        if rtype not in resource_types():
            raise NotFound(f"Unknown resource type {rtype!r}")
        if fid is not None and not is_valid_id(fid):
            raise NotFound(f"{rtype}/{fid[:80]} is not known")

    @staticmethod
    def _stored(row: ResourceRow) -> Stored:
        assert row.text is not None
        return Stored(row.res_type, row.fhir_id, row.version, row.last_updated, row.text)

    @staticmethod
    def _stored_text(rtype: str, fid: str, text: str) -> Stored:
        meta = json.loads(text).get("meta", {})
        return Stored(rtype, fid, int(meta.get("versionId", 1)), meta.get("lastUpdated", ""), text)
