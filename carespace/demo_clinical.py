"""Demo clinical data for one patient: labs with history, documents (PDF, image, text) and messages.

Everything is written through FhirService as FHIR resources, with demo identifiers so that running
it again changes nothing (conditional create).
"""
from __future__ import annotations

import base64
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_server import AccessContext, FhirService

DEMO = "urn:carespace:demo"
LOINC = "http://loinc.org"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
MSG_CATEGORY = "urn:carespace:message-category"

# LOINC code, name, unit, low, high, values oldest -> newest (None interpretation = from range)
LABS: list[tuple[str, str, str, float, float, list[float]]] = [
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 99, [92, 104, 97, 118, 101]),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.0, 5.6, [5.4, 5.7, 5.9, 6.1]),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1, [4.2, 4.8, 6.4, 4.5]),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 13.5, 17.5, [14.1, 13.2, 12.9, 13.8, 14.4]),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 0, 199, [212, 204, 188]),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.7, 1.3, [0.9, 1.0, 0.95, 1.1]),
    ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", 0.4, 4.0, [2.1, 1.8]),
]
CRITICAL = {("2823-3", 6.4)}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _ident(value: str) -> dict[str, str]:
    return {"system": DEMO, "value": value}


def _create(svc: FhirService, ctx: AccessContext, resource: dict[str, Any], key: str) -> str:
    """Create once: conditional on the demo identifier."""
    resource = {**resource, "identifier": [_ident(key)]}
    result = svc.create(ctx, resource["resourceType"], resource, if_none_exist=f"identifier={DEMO}|{key}")
    return result.stored.id


def _exists(svc: FhirService, ctx: AccessContext, rtype: str, key: str) -> str | None:
    _, page = svc.search(ctx, rtype, [("identifier", f"{DEMO}|{key}")])
    return page.matches[0][1] if page.matches else None


def practice(svc: FhirService, ctx: AccessContext | None = None) -> tuple[str, str]:
    """(Organization id, Practitioner id) of the demo practice and its physician."""
    ctx = ctx or AccessContext.system("demo", notify=False)
    org = _create(svc, ctx, {"resourceType": "Organization", "active": True, "name": "CareSpace Family Practice",
                             "telecom": [{"system": "phone", "value": "555-0100"}]}, "practice")
    doc = _create(svc, ctx, {"resourceType": "Practitioner", "active": True,
                             "name": [{"prefix": ["Dr."], "given": ["Maya"], "family": "Chen",
                                       "text": "Dr. Maya Chen"}]}, "dr-chen")
    return org, doc


def add_clinical_demo(fhir_service: FhirService, patient_id: str) -> dict[str, int]:
    """Load demo labs, documents and messages for Patient/<patient_id>; idempotent. Returns counts."""
    svc, ctx = fhir_service, AccessContext.system("demo", notify=False)
    org, dr = practice(svc, ctx)
    now = _now()
    counts = {"Observation": 0, "DocumentReference": 0, "Communication": 0}
    for code, name, unit, low, high, values in LABS:
        for i, value in enumerate(values):
            when = now - timedelta(days=120 * (len(values) - 1 - i) + 3 + len(code))
            flag = "HH" if (code, value) in CRITICAL else ("H" if value > high else ("L" if value < low else "N"))
            obs = {"resourceType": "Observation", "status": "final",
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                             "code": "laboratory", "display": "Laboratory"}]}],
                   "code": {"coding": [{"system": LOINC, "code": code, "display": name}], "text": name},
                   "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": _iso(when),
                   "issued": _iso(when + timedelta(hours=6)), "performer": [{"reference": f"Organization/{org}"}],
                   "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
                   "interpretation": [{"coding": [{"system": INTERP, "code": flag}]}],
                   "referenceRange": [{"low": {"value": low, "unit": unit}, "high": {"value": high, "unit": unit}}]}
            _create(svc, ctx, obs, f"{patient_id}-lab-{code}-{i}")
            counts["Observation"] += 1
    for n, (title, kind, type_code, type_text, days_ago, description) in enumerate(DOCUMENTS):
        key = f"{patient_id}-doc-{n}"
        if _exists(svc, ctx, "DocumentReference", key):
            counts["DocumentReference"] += 1
            continue
        ctype, data = _content(kind, title)
        binary = svc.create(ctx, "Binary", {"resourceType": "Binary", "contentType": ctype,
                                            "securityContext": {"reference": f"Patient/{patient_id}"},
                                            "data": base64.b64encode(data).decode()}).stored.id
        when = now - timedelta(days=days_ago)
        _create(svc, ctx, {
            "resourceType": "DocumentReference", "status": "current",
            "type": {"coding": [{"system": LOINC, "code": type_code, "display": type_text}], "text": type_text},
            "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                                      "code": "clinical-note", "display": "Clinical Note"}]}],
            "subject": {"reference": f"Patient/{patient_id}"}, "date": _iso(when),
            "author": [{"reference": f"Practitioner/{dr}", "display": "Dr. Maya Chen"}],
            "custodian": {"reference": f"Organization/{org}"}, "description": description,
            "content": [{"attachment": {"contentType": ctype, "url": f"Binary/{binary}", "title": title,
                                        "size": len(data), "creation": _iso(when)}}]}, key)
        counts["DocumentReference"] += 1
    for n, (subject, text, days_ago) in enumerate(MESSAGES):
        _create(svc, ctx, {
            "resourceType": "Communication", "status": "completed",
            "category": [{"coding": [{"system": MSG_CATEGORY, "code": "health", "display": "Health"}], "text": "Health"}],
            "subject": {"reference": f"Patient/{patient_id}"}, "topic": {"text": subject},
            "sender": {"reference": f"Practitioner/{dr}", "display": "Dr. Maya Chen"},
            "recipient": [{"reference": f"Patient/{patient_id}"}],
            "sent": _iso(now - timedelta(days=days_ago, hours=n)), "payload": [{"contentString": text}]},
            f"{patient_id}-msg-{n}")
        counts["Communication"] += 1
    return counts


# title, kind, LOINC type, type text, days ago, description
DOCUMENTS = [
    ("Lab report - comprehensive metabolic panel", "pdf", "11502-2", "Laboratory report", 5, "Comprehensive metabolic panel results"),
    ("After-visit summary", "pdf", "34133-9", "Summary of episode note", 12, "Summary of your annual check-up"),
    ("Chest X-ray", "image", "18748-4", "Diagnostic imaging study", 30, "Chest X-ray, two views"),
    ("Visit note - follow-up", "text", "11506-3", "Progress note", 45, "Follow-up visit note"),
    ("Care plan", "text", "18776-5", "Plan of care note", 60, "Diabetes prevention care plan"),
    ("Skin check photo", "image", "72170-4", "Photographic image", 90, "Photo of the left forearm lesion"),
    ("Discharge instructions", "pdf", "18842-5", "Discharge summary", 150, "Instructions after your day surgery"),
    ("Immunization record", "text", "11369-6", "History of Immunization Narrative", 200, "Vaccines on file"),
    ("Referral letter - cardiology", "pdf", "57133-1", "Referral note", 320, "Referral to Dr. Patel, cardiology"),
]

MESSAGES = [
    ("Your lab results are ready", "Hello, your recent lab results are now in CareSpace under Health. Your potassium "
     "was high on one test and normal on the repeat; no action is needed. Dr. Chen", 2),
    ("Flu shot reminder", "Flu shots are available at the practice on weekdays from 8 to 11. Reply if you have "
     "questions.", 20),
    ("Welcome to CareSpace", "Welcome! You can message your care team here about prescriptions (Rx) and health "
     "questions. For emergencies call 911.", 40),
]


def _content(kind: str, title: str) -> tuple[str, bytes]:
    if kind == "pdf":
        return "application/pdf", _pdf(title)
    if kind == "image":
        return "image/png", _png()
    return "text/plain", (f"{title}\n\nPatient seen at CareSpace Family Practice.\n"
                          "Assessment: stable. Plan: continue current medicines, recheck labs in 3 months.\n"
                          "Signed: Dr. Maya Chen\n").encode()


def _pdf(title: str) -> bytes:
    """A one-page PDF with the title and a line of text (valid xref offsets)."""
    safe = title.replace("\\", "").replace("(", "").replace(")", "")
    stream = f"BT /F1 18 Tf 72 720 Td ({safe}) Tj 0 -28 Td /F1 12 Tf (CareSpace Family Practice) Tj ET".encode()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def _png(w: int = 160, h: int = 120) -> bytes:
    """A small grey-gradient PNG."""
    rows = b"".join(b"\x00" + bytes((x + y) * 255 // (w + h) for x in range(w)) for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# Messages from the patient side waiting in the practice's Inbox: (key, sender kind, category, subject, text, hours ago)
INBOX = [
    ("rx-refill", "patient", "rx", "Refill of my metformin",
     "Hello, I have 5 tablets of metformin left. Could you send a new prescription to my usual pharmacy?", 3),
    ("question", "patient", "health", "Dizzy in the mornings",
     "Since last week I feel dizzy for a few minutes after getting up. Should I come in?", 26),
    ("proxy", "proxy", "health", "Question about my mother's results",
     "Hi, I help my mother with her appointments. Her potassium was high once: does she need a repeat test?", 8),
]


def add_inbox_demo(fhir_service: FhirService, patient_id: str, proxy_ref: str | None = None,
                   reply_to_first: bool = True, keys: tuple[str, ...] = ("rx-refill", "question", "proxy")) -> int:
    """Patient-side messages waiting in the practice's Inbox (and a reply to a practice message); idempotent."""
    svc, ctx = fhir_service, AccessContext.system("demo", notify=False)
    org, dr = practice(svc, ctx)
    now = _now()
    count = 0
    for key, who, category, subject, text, hours in INBOX:
        if key not in keys:
            continue
        sender = proxy_ref if who == "proxy" else f"Patient/{patient_id}"
        if sender is None:
            continue
        _create(svc, ctx, {
            "resourceType": "Communication", "status": "completed",
            "category": [{"coding": [{"system": MSG_CATEGORY, "code": category,
                                      "display": "Rx" if category == "rx" else "Health"}],
                          "text": "Rx" if category == "rx" else "Health"}],
            "subject": {"reference": f"Patient/{patient_id}"}, "topic": {"text": subject},
            "sender": {"reference": sender}, "recipient": [{"reference": f"Organization/{org}"}],
            "sent": _iso(now - timedelta(hours=hours)), "payload": [{"contentString": text}]},
            f"{patient_id}-inbox-{key}")
        count += 1
    if reply_to_first:
        answered = _exists(svc, ctx, "Communication", f"{patient_id}-msg-1")  # "Flu shot reminder"
        if answered and not _exists(svc, ctx, "Communication", f"{patient_id}-inbox-reply"):
            _create(svc, ctx, {
                "resourceType": "Communication", "status": "completed",
                "category": [{"coding": [{"system": MSG_CATEGORY, "code": "health", "display": "Health"}],
                              "text": "Health"}],
                "subject": {"reference": f"Patient/{patient_id}"}, "topic": {"text": "Flu shot reminder"},
                "sender": {"reference": f"Patient/{patient_id}"}, "recipient": [{"reference": f"Practitioner/{dr}"}],
                "inResponseTo": [{"reference": f"Communication/{answered}"}], "sent": _iso(now - timedelta(hours=1)),
                "payload": [{"contentString": "Can I come on Saturday instead? I work weekdays."}]},
                f"{patient_id}-inbox-reply")
            count += 1
    return count
