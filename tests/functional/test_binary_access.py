"""Binary is outside R4's patient compartment: a patient token still reaches only its own documents."""
from __future__ import annotations

import base64

import pytest

from fhir_server.access.context import AccessContext
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


def _raw(fhir, resource):
    """Store as an earlier release did: no rules, so no Binary is filed by its document."""
    with fhir.unit(write=True) as repo:
        repo.write(dict(resource), None, "POST")


def test_upgrade_files_earlier_binaries_only_where_their_documents_agree(fhir):
    alex, sam = _patient(fhir, "Alex"), _patient(fhir, "Sam")
    for bid in ("old-own", "old-disputed"):
        _raw(fhir, {"resourceType": "Binary", "id": bid, "contentType": "text/plain", "data": "aGk="})
    for did, pid, bid in (("d1", alex, "old-own"), ("d2", sam, "old-disputed"), ("d3", alex, "old-disputed")):
        _raw(fhir, {"resourceType": "DocumentReference", "id": did, "status": "current",
                    "subject": {"reference": f"Patient/{pid}"},
                    "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/{bid}"}}]})
    ctx = AccessContext.from_scopes(["patient/*.rs"], patient_id=alex, user=f"Patient/{alex}")
    for bid in ("old-own", "old-disputed"):
        with pytest.raises(NotFound):
            fhir.read(ctx, "Binary", bid)
    assert fhir.file_document_binaries() == 1
    assert fhir.read(ctx, "Binary", "old-own").json()["securityContext"] == {"reference": f"Patient/{alex}"}
    with pytest.raises(NotFound):
        fhir.read(ctx, "Binary", "old-disputed")  # Sam's document and Alex's pointer disagree: filed by no one
    assert fhir.file_document_binaries() == 0  # idempotent
