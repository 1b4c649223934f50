"""Upload document: PDF or image decided from the bytes (never the name), a size limit from configuration,
Binary + DocumentReference in one transaction, seen among the patient's documents at once; anything else
is refused with a message and nothing is stored."""
from __future__ import annotations

import io

import pytest

from carespace.demo_clinical import _pdf, _png
from portal_ui.practice.documents import sniff
from tests.conftest import _new_db_url, make_app
from tests.support import portal_data as pd
from tests.support import practice as pr


@pytest.fixture
def world(app, client, fhir):
    staff_uid, dr = pr.add_staff(app, fhir)
    pid = pr.patient(fhir, email="pat@example.com")
    patient_uid = pd.add_user(app, "pat@example.com", "Pat Portal", "1970-05-04", pid)
    pd.sign_in(app, client, staff_uid)
    return {"pid": pid, "dr": dr, "patient": patient_uid}


def upload(client, pid, data, filename="scan.pdf", **form):
    path = f"/practice/patients/{pid}/documents/new"
    fields = {"csrf_token": pr.token(client, path), "title": "Lab report - lipid panel", "type": "11502-2",
              "date": "2025-03-01", **form}
    if data is not None:
        fields["file"] = (io.BytesIO(data), filename)
    return client.post(path, data=fields, content_type="multipart/form-data")


def counts(fhir):
    return len(pr.search(fhir, "Binary")), len(pr.search(fhir, "DocumentReference"))


@pytest.mark.parametrize("data,ctype", [
    (b"%PDF-1.4\n...", "application/pdf"), (b"\x89PNG\r\n\x1a\n....", "image/png"), (b"\xff\xd8\xff\xe0..", "image/jpeg"),
    (b"GIF89a...", "image/gif"), (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"), (b"<html>", None),
    (b"PK\x03\x04", None), (b"", None)])
def test_type_is_decided_from_the_bytes(data, ctype):
    assert sniff(data) == ctype


def test_pdf_upload_is_binary_plus_document_reference_seen_by_the_patient(app, client, fhir, world):
    r = upload(client, world["pid"], _pdf("Lipid panel"))
    assert r.status_code == 302 and r.headers["Location"] == f"/practice/patients/{world['pid']}"
    (doc,) = pr.search(fhir, "DocumentReference")
    (binary,) = pr.search(fhir, "Binary")
    att = doc["content"][0]["attachment"]
    assert att["url"] == f"Binary/{binary['id']}" and att["contentType"] == "application/pdf"
    assert att["title"] == "Lab report - lipid panel" and att["size"] == len(_pdf("Lipid panel"))
    assert doc["status"] == "current" and doc["subject"] == {"reference": f"Patient/{world['pid']}"}
    assert doc["type"]["coding"][0] == {"system": "http://loinc.org", "code": "11502-2", "display": "Laboratory report"}
    assert doc["author"][0]["reference"] == f"Practitioner/{world['dr']}"
    assert binary["contentType"] == "application/pdf"
    assert binary["securityContext"] == {"reference": f"Patient/{world['pid']}"}
    patient = app.test_client()
    pd.sign_in(app, patient, world["patient"])
    assert "Lab report - lipid panel" in patient.get("/health").get_data(as_text=True)
    got = patient.get(f"/health/documents/{doc['id']}/content")
    assert got.status_code == 200 and got.mimetype == "application/pdf" and got.data == _pdf("Lipid panel")


def test_an_image_named_pdf_is_stored_as_the_image_it_is(client, fhir, world):
    assert upload(client, world["pid"], _png(), filename="report.pdf", type="72170-4").status_code == 302
    (doc,) = pr.search(fhir, "DocumentReference")
    assert doc["content"][0]["attachment"]["contentType"] == "image/png"


@pytest.mark.parametrize("data,filename,form,message", [
    (b"MZ\x90\x00 this is a program", "report.pdf", {}, "not a PDF or an image"),
    (b"<html><script>alert(1)</script>", "photo.png", {}, "not a PDF or an image"),
    (None, "", {}, "Choose a file"),
    (b"%PDF-1.4", "a.pdf", {"title": " "}, "Enter a title"),
    (b"%PDF-1.4", "a.pdf", {"type": "1234-5"}, "Choose the document type"),
    (b"%PDF-1.4", "a.pdf", {"date": "yesterday"}, "valid document date"),
])
def test_anything_else_is_refused_and_nothing_is_stored(client, fhir, world, data, filename, form, message):
    r = upload(client, world["pid"], data, filename, **form)
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert message in html
    assert counts(fhir) == (0, 0)


def test_size_limit_comes_from_configuration(backend, pg_cluster, tmp_path):
    from carespace import close_app
    app = make_app(_new_db_url(backend, pg_cluster, tmp_path), tmp_path / "i", UPLOAD_MAX_BYTES=2048)
    try:
        fhir = app.extensions["fhir_service"]
        client = app.test_client()
        uid, _ = pr.add_staff(app, fhir)
        pid = pr.patient(fhir)
        pd.sign_in(app, client, uid)
        html = client.get(f"/practice/patients/{pid}/documents/new").get_data(as_text=True)
        assert "at most 2 KB" in html
        r = upload(client, pid, b"%PDF-1.4\n" + b"0" * 4096)
        assert r.status_code == 422 and "the limit is 2 KB" in r.get_data(as_text=True)
        assert counts(fhir) == (0, 0)
        assert upload(client, pid, b"%PDF-1.4\n" + b"0" * 1000).status_code == 302
        assert counts(fhir) == (1, 1)
    finally:
        close_app(app)


def test_a_failing_transaction_stores_neither(client, fhir, world, monkeypatch):
    from fhir_server.errors import Unprocessable
    from fhir_server.operations import transaction
    original = transaction.BundleProcessor._one

    def fail_second(self, repo, ctx, req, rtype, *args, **kwargs):
        if rtype == "DocumentReference":
            raise Unprocessable("refused for the test")
        return original(self, repo, ctx, req, rtype, *args, **kwargs)

    monkeypatch.setattr(transaction.BundleProcessor, "_one", fail_second)
    r = upload(client, world["pid"], _pdf("x"))
    assert r.status_code == 422 and "nothing was stored" in r.get_data(as_text=True)
    assert counts(fhir) == (0, 0)
