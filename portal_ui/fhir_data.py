"""Small readers over FhirService shared by the portal's services (paging, dates, names, codings)."""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from fhir_server import AccessContext, FhirError, FhirService


class PortalError(Exception):
    """A request the portal cannot honour; the message is shown to the person as is."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def search_all(svc: FhirService, ctx: AccessContext, rtype: str, items: Iterable[tuple[str, str]],
               limit: int = 5000) -> list[dict[str, Any]]:
    """Every match of a search (following cursors), up to `limit` resources."""
    base = [*items, ("_count", "500")]
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(out) < limit:
        _, page = svc.search(ctx, rtype, base + ([("_cursor", cursor)] if cursor else []))
        out.extend(json.loads(text) for _, _, text in page.matches)
        cursor = page.next_cursor
        if not cursor:
            break
    return out[:limit]


def search_page(svc: FhirService, ctx: AccessContext, rtype: str, items: list[tuple[str, str]],
                cursor: str | None) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """One page of a search: (resources, next cursor, previous cursor)."""
    try:
        _, page = svc.search(ctx, rtype, items + ([("_cursor", cursor)] if cursor else []))
    except FhirError as err:
        if cursor:
            raise PortalError("That page link is no longer valid; start from the first page.") from err
        raise
    return [json.loads(t) for _, _, t in page.matches], page.next_cursor, page.prev_cursor


def ref_id(ref: Any, rtype: str) -> str | None:
    """The id of a local reference such as {"reference": "Binary/7"}."""
    text = ref.get("reference") if isinstance(ref, dict) else ref
    if not isinstance(text, str) or f"{rtype}/" not in text:
        return None
    return text.rsplit(f"{rtype}/", 1)[1].split("/", 1)[0] or None


def parse_when(value: str | None) -> datetime | None:
    """A FHIR date/dateTime/instant as a datetime (naive dates at midnight), None when absent or bad."""
    if not value:
        return None
    text = value.replace("Z", "+00:00")
    for fmt_len in (len(text), 10, 7, 4):
        try:
            if fmt_len == len(text):
                return datetime.fromisoformat(text)
            if fmt_len == 10 and len(text) >= 10:
                return datetime.fromisoformat(text[:10])
        except ValueError:
            continue
    if len(text) in (4, 7):
        return datetime.fromisoformat(text + ("-01-01" if len(text) == 4 else "-01"))
    return None


def day(value: str | None) -> str:
    """The date part shown in tables (YYYY-MM-DD), '' when absent."""
    return (value or "")[:10]


def when_text(value: str | None) -> str:
    """A readable date and time, e.g. 'Mar 4, 2024, 14:05' (date only for plain dates)."""
    dt = parse_when(value)
    if dt is None:
        return value or ""
    if value and len(value) <= 10:
        return f"{dt:%b} {dt.day}, {dt.year}"
    return f"{dt:%b} {dt.day}, {dt.year}, {dt:%H:%M}"
