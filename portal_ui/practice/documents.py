"""Upload document: a PDF or image (type decided from the bytes), title, LOINC document type and date,
stored as Binary + DocumentReference in one FHIR transaction; anything else is refused, nothing stored."""
from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from fhir_server import AccessContext, FhirError, FhirService

from . import FormError, catalog
from .patients import _date

LOINC = "http://loinc.org"
ACCEPTED = "PDF, PNG, JPEG, GIF or WebP"
_CATEGORY = {"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                         "code": "clinical-note", "display": "Clinical Note"}]}


def sniff(data: bytes) -> str | None:
    """The content type the bytes really are (magic numbers), or None for anything not accepted."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def size_text(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB" if n >= 1024 * 1024 else f"{max(1, n // 1024)} KB"


@dataclass(frozen=True)
class Upload:
    title: str
    type_code: str
    date: str
    filename: str
    data: bytes


def check(form: dict[str, str], filename: str, data: bytes | None, max_bytes: int) -> tuple[Upload, str]:
    """The upload and its sniffed content type; FormError naming each problem."""
    errors: dict[str, str] = {}
    title = " ".join((form.get("title") or "").split())
    if not title:
        errors["title"] = "Enter a title the patient will recognise, for example \u201cLab report - lipid panel\u201d."
    elif len(title) > 200:
        errors["title"] = "The title is too long (at most 200 characters)."
    type_code = (form.get("type") or "").strip()
    if catalog.document_type(type_code) is None:
        errors["type"] = "Choose the document type."
    when = _date(form.get("date", ""), "date", errors, "document date")
    ctype = None
    if not data:
        errors["file"] = f"Choose a file to upload ({ACCEPTED})."
    elif len(data) > max_bytes:
        errors["file"] = f"This file is {size_text(len(data))}; the limit is {size_text(max_bytes)}. Nothing was stored."
    else:
        ctype = sniff(data)
        if ctype is None:
            errors["file"] = (f"This file is not a PDF or an image ({ACCEPTED}), whatever its name says. "
                              "Nothing was stored.")
    if errors or ctype is None or data is None:
        raise FormError(errors)
    return Upload(title, type_code, when, filename, data), ctype


def upload(svc: FhirService, ctx: AccessContext, patient_id: str, staff: tuple[str | None, str],
           form: dict[str, str], filename: str, data: bytes | None, max_bytes: int) -> str:
    """Binary + DocumentReference in one transaction; returns the DocumentReference id."""
    up, ctype = check(form, filename, data, max_bytes)
    doc_type = catalog.document_type(up.type_code)
    assert doc_type is not None
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    binary_id = str(uuid.uuid4())
    binary = {"resourceType": "Binary", "id": binary_id, "contentType": ctype, "securityContext": {"reference": f"Patient/{patient_id}"},
              "data": base64.b64encode(up.data).decode()}
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": LOINC, "code": doc_type.code, "display": doc_type.display}], "text": doc_type.name},
        "category": [_CATEGORY], "subject": {"reference": f"Patient/{patient_id}"}, "date": now,
        "description": up.title,
        "content": [{"attachment": {"contentType": ctype, "url": f"Binary/{binary_id}", "title": up.title,
                                    "size": len(up.data), "creation": up.date}}],
        "context": {"period": {"start": up.date}}}
    if staff[0]:
        doc["author"] = [{"reference": staff[0], "display": staff[1]}]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": binary, "request": {"method": "PUT", "url": f"Binary/{binary_id}"}},  # a new id: created
        {"fullUrl": "urn:uuid:doc", "resource": doc, "request": {"method": "POST", "url": "DocumentReference"}}]}
    try:
        reply = svc.process_bundle(ctx, bundle)
    except FhirError as err:
        raise FormError({"file": "The document could not be stored (nothing was stored): " + err.diagnostics}) from err
    refs = [e["response"]["location"].split("/_history")[0] for e in reply["entry"]]
    return refs[1].rsplit("/", 1)[1]  # the transaction's entries are audited by the FHIR layer
