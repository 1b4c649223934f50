"""Binary is outside R4's patient compartment: a patient token still reaches only its own documents."""
from __future__ import annotations

import base64

from fhir_server.access import AccessContext
from fhir_server.errors import NotFound


def _patient(fhir, name):
    return fhir.create(AccessContext.system(), "Patient", {"resourceType": "Patient", "name": [{"family": name}]}).stored.id


def _document(fhir, pid, text, security_context=False):
    body = {"resourceType": "Binary", "contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}
    if security_context:
        body["securityContext"] = {"reference": f"Patient/{pid}"}
    bid = fhir.create(AccessContext.system(), "Binary", body).stored.id
    fhir.create(AccessContext.system(), "DocumentReference", {
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": f"Patient/{pid}"},
        "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/{bid}"}}]})
    return bid


def test_patient_token_reads_own_binary_but_not_another_patients(fhir):
    mine, theirs = _patient(fhir, "Mine"), _patient(fhir, "Theirs")
    own_doc = _document(fhir, mine, "my note")
    own_ctx = _document(fhir, mine, "my labelled note", security_context=True)
    other = _document(fhir, theirs, "their note")
    ctx = AccessContext.from_scopes(["patient/*.rs"], patient_id=mine, user=f"Patient/{mine}")
    assert fhir.read(ctx, "Binary", own_doc).json()["contentType"] == "text/plain"
    assert fhir.read(ctx, "Binary", own_ctx).id == own_ctx
    try:
        fhir.read(ctx, "Binary", other)
    except NotFound:
        pass
    else:
        raise AssertionError("a patient token read another patient's Binary")
    _, page = fhir.search(ctx, "Binary", [])
    assert {i for _, i, _ in page.matches} == {own_doc, own_ctx}  # the practice's document filed its Binary
