"""Documents: DocumentReference + Binary read under the viewer's access context, listed and served."""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from fhir_server import AccessContext, FhirError, FhirService, concept_text

from .fhir_data import PortalError, ref_id, search_all, search_page, when_text

LANDING_COUNT = 6
PAGE_SIZE = 20
INLINE_TYPES = {"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain"}
_EXT = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
        "image/webp": ".webp", "text/plain": ".txt", "text/html": ".html", "application/xml": ".xml"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Document:
    """A document as listed and shown."""

    id: str
    title: str
    type_code: str
    type_text: str
    date: str
    author: str
    description: str
    content_type: str

    @property
    def date_text(self) -> str:
        return when_text(self.date)

    @property
    def kind(self) -> str:
        """pdf | image | text | other: how the document page shows it."""
        if self.content_type == "application/pdf":
            return "pdf"
        if self.content_type.startswith("image/") and self.content_type in INLINE_TYPES:
            return "image"
        if self.content_type == "text/plain":
            return "text"
        return "other"


def _type_code(doc: dict[str, Any]) -> str:
    for c in (doc.get("type") or {}).get("coding", []):
        if c.get("code"):
            return f"{c.get('system', '')}|{c['code']}" if c.get("system") else str(c["code"])
    return ""


def _attachment(doc: dict[str, Any]) -> dict[str, Any]:
    for content in doc.get("content", []):
        if isinstance(content.get("attachment"), dict):
            return dict(content["attachment"])
    return {}


def to_document(doc: dict[str, Any]) -> Document:
    att = _attachment(doc)
    type_text = concept_text(doc.get("type")) or concept_text((doc.get("category") or [None])[0]) or "Document"
    author = ", ".join(a.get("display", "") for a in doc.get("author", []) if a.get("display"))
    date = doc.get("date") or ((doc.get("context") or {}).get("period") or {}).get("start") or att.get("creation", "")
    return Document(doc.get("id", ""), att.get("title") or doc.get("description") or type_text, _type_code(doc),
                    type_text, date, author, doc.get("description") or "",
                    (att.get("contentType") or "application/octet-stream").split(";")[0].strip().lower())


def _base(patient_id: str) -> list[tuple[str, str]]:
    return [("patient", f"Patient/{patient_id}"), ("status", "current"), ("_sort", "-date")]


def recent(svc: FhirService, ctx: AccessContext, patient_id: str) -> tuple[list[Document], bool]:
    """The 6 most recent documents, and whether there are more."""
    docs, next_cursor, _ = search_page(svc, ctx, "DocumentReference",
                                       _base(patient_id) + [("_count", str(LANDING_COUNT))], None)
    return [to_document(d) for d in docs], next_cursor is not None


def type_options(svc: FhirService, ctx: AccessContext, patient_id: str) -> list[tuple[str, str]]:
    """(token, label) of every document type the patient has, for the filter."""
    seen: dict[str, str] = {}
    for d in search_all(svc, ctx, "DocumentReference", _base(patient_id) + [("_elements", "type")], limit=2000):
        code = _type_code(d)
        if code:
            seen.setdefault(code, concept_text(d.get("type")) or code)
    return sorted(seen.items(), key=lambda kv: kv[1].lower())


def listing(svc: FhirService, ctx: AccessContext, patient_id: str, doc_type: str, start: str, end: str,
            cursor: str | None) -> tuple[list[Document], str | None, str | None]:
    """One page of all documents, filtered by type and date (YYYY-MM-DD, inclusive)."""
    items = _base(patient_id) + [("_count", str(PAGE_SIZE))]
    for name, value in (("From", start), ("To", end)):
        if value and not _DATE.match(value):
            raise PortalError(f"{name} must be a date like 2024-01-31.")
    if start and end and start > end:
        raise PortalError("From must be on or before To.")
    if doc_type:
        items.append(("type", doc_type))
    if start:
        items.append(("date", f"ge{start}"))
    if end:
        items.append(("date", f"le{end}"))
    docs, nxt, prev = search_page(svc, ctx, "DocumentReference", items, cursor)
    return [to_document(d) for d in docs], nxt, prev


def get(svc: FhirService, ctx: AccessContext, doc_id: str) -> dict[str, Any]:
    """The DocumentReference itself (404 for anything outside the viewer's patient)."""
    try:
        return svc.read(ctx, "DocumentReference", doc_id).json()
    except FhirError as err:
        raise PortalError("This document does not exist or is not part of this record.", 404) from err


def content(svc: FhirService, ctx: AccessContext, doc: dict[str, Any]) -> tuple[bytes, str, str]:
    """(bytes, content type, file name) of a document's first attachment, inline data or a Binary."""
    att = _attachment(doc)
    ctype = (att.get("contentType") or "application/octet-stream").split(";")[0].strip().lower()
    data = att.get("data")
    if data is None:
        binary_id = ref_id(att.get("url"), "Binary")
        if binary_id is None:
            raise PortalError("This document has no stored content to show.", 404)
        try:
            binary = svc.read(ctx, "Binary", binary_id).json()
        except FhirError as err:
            raise PortalError("The content of this document is missing.", 404) from err
        data = binary.get("data")
        ctype = (binary.get("contentType") or ctype).split(";")[0].strip().lower()
    try:
        raw = base64.b64decode(data or "", validate=False)
    except (binascii.Error, ValueError) as err:
        raise PortalError("The content of this document is damaged.", 500) from err
    return raw, ctype, filename(att.get("title") or doc.get("description") or "document", ctype)


def filename(title: str, ctype: str) -> str:
    """A safe ASCII file name with the right extension."""
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "", title).strip().replace(" ", "-")[:80] or "document"
    ext = _EXT.get(ctype, "")
    return stem if not ext or stem.lower().endswith(ext) else stem + ext


def text_of(raw: bytes) -> str:
    """A text document's characters (UTF-8, replacing what is not)."""
    return raw.decode("utf-8", errors="replace")
