"""Health tab: labs grouped per test with history, 6 most recent documents, all documents, document content."""
from __future__ import annotations

import base64
import re

import pytest

from carespace.demo_clinical import add_clinical_demo
from tests.support import portal_data as pd


@pytest.fixture
def patient(app, fhir):
    pid = pd.add_patient(fhir)
    uid = pd.add_user(app, "pat@example.com", "Pat Portal", "1970-05-04", pid)
    return pid, uid


def _doc(client, pid, title, date, ctype="text/plain", data=b"hello", type_code="11506-3", type_text="Progress note"):
    """A DocumentReference + Binary posted through the FHIR API, as the practice's EHR would."""
    r = client.post("/fhir/Binary", json={"resourceType": "Binary", "contentType": ctype,
                                          "data": base64.b64encode(data).decode()})
    assert r.status_code == 201, r.get_data(as_text=True)
    bid = r.get_json()["id"]
    r = client.post("/fhir/DocumentReference", json={
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": f"Patient/{pid}"},
        "type": {"coding": [{"system": "http://loinc.org", "code": type_code}], "text": type_text}, "date": date + "T10:00:00Z",
        "content": [{"attachment": {"contentType": ctype, "url": f"Binary/{bid}", "title": title}}]})
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()["id"]


def test_health_requires_login(client):
    r = client.get("/health")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=%2Fhealth")
    assert client.get("/").headers["Location"] == "/login"


def test_labs_one_row_per_test_latest_first_with_history(app, client, fhir, patient):
    pid, uid = patient
    add_clinical_demo(fhir, pid)
    pd.sign_in(app, client, uid)
    html = client.get("/health").get_data(as_text=True)
    assert "Download" in html and 'href="/health/download"' in html and 'href="/health/send-record"' in html
    buttons = re.findall(r'Show history for </span>([^<]+)</button>', html)
    assert len(buttons) == len(set(buttons)) == 7  # seven tests, one row each
    # Potassium: latest 4.5 normal, history newest first with the critical 6.4
    block = html.split('id="hist-loinc-2823-3"', 1)[1].split("</table>", 1)[0]
    row = html.split('value="loinc-2823-3"', 1)[1].split("</tr>", 1)[0]
    assert "4.5" in row and "mmol/L" in row and "3.5–5.1 mmol/L" in row
    values = re.findall(r"<td>([\d.]+) mmol/L</td>", block)
    assert values == ["4.5", "6.4", "4.8", "4.2"]
    assert "Critical high" in block
    assert "<svg" in html and "reference range 3.5–5.1" in html.lower()
    # Without JavaScript the arrow submits ?open=<test> and the server renders that history open
    opened = client.get("/health?open=loinc-2823-3").get_data(as_text=True)
    assert 'aria-controls="hist-loinc-2823-3"' in opened
    assert re.search(r'id="hist-loinc-2823-3"\s*>', opened)


def test_flag_from_range_when_no_interpretation(app, client, fhir, patient):
    pid, uid = patient
    pd.open_fhir_api(app)
    obs = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory"}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}], "text": "Glucose"},
           "effectiveDateTime": "2024-03-01", "valueQuantity": {"value": 130, "unit": "mg/dL"},
           "referenceRange": [{"low": {"value": 70}, "high": {"value": 99}}]}
    assert client.post("/fhir/Observation", json=obs).status_code == 201
    pd.sign_in(app, client, uid)
    row = client.get("/health").get_data(as_text=True).split('value="loinc-2345-7"', 1)[1].split("</tr>", 1)[0]
    assert "130" in row and "High" in row and "2024-03-01" in row


def test_landing_shows_six_most_recent_documents_and_all_documents_pages(app, client, fhir, patient):
    pid, uid = patient
    pd.open_fhir_api(app)
    for i in range(25):
        _doc(client, pid, f"Note {i:02d}", f"2023-01-{i + 1:02d}", type_code="11506-3" if i % 2 else "18842-5",
             type_text="Progress note" if i % 2 else "Discharge summary")
    pd.sign_in(app, client, uid)
    html = client.get("/health").get_data(as_text=True)
    titles = re.findall(r'<a href="/health/documents/[^"]+">(Note \d+)</a>', html)
    assert titles == [f"Note {i:02d}" for i in range(24, 18, -1)]
    assert ">View All Documents</a>" in html
    page1 = client.get("/health/documents").get_data(as_text=True)
    first = re.findall(r">(Note \d+)</a>", page1)
    assert len(first) == 20 and first[0] == "Note 24"
    nxt = re.search(r'href="(/health/documents\?[^"]*cursor=[^"]+)">Next page', page1)
    assert nxt
    page2 = client.get(nxt.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r">(Note \d+)</a>", page2) == [f"Note {i:02d}" for i in range(4, -1, -1)]
    filtered = client.get("/health/documents?type=http://loinc.org|18842-5&from=2023-01-05&to=2023-01-11")
    got = re.findall(r">(Note \d+)</a>", filtered.get_data(as_text=True))
    assert got == ["Note 10", "Note 08", "Note 06", "Note 04"]
    bad = client.get("/health/documents?from=yesterday")
    assert bad.status_code == 400 and "From must be a date" in bad.get_data(as_text=True)


@pytest.mark.parametrize("ctype,data,kind", [
    ("application/pdf", b"%PDF-1.4\n%%EOF\n", "iframe"), ("image/png", b"\x89PNG\r\n\x1a\n", "<img"),
    ("text/plain", "Take one tablet daily — Dr. Chen".encode(), "<pre")])
def test_document_viewed_inline_and_downloaded(app, client, fhir, patient, ctype, data, kind):
    pid, uid = patient
    pd.open_fhir_api(app)
    did = _doc(client, pid, "My file", "2024-02-02", ctype=ctype, data=data)
    pd.sign_in(app, client, uid)
    page = client.get(f"/health/documents/{did}").get_data(as_text=True)
    assert kind in page and "Download this document" in page
    if ctype == "text/plain":
        assert "Take one tablet daily — Dr. Chen" in page
    inline = client.get(f"/health/documents/{did}/content")
    assert inline.status_code == 200 and inline.data == data
    assert inline.mimetype == ctype and inline.headers["Content-Disposition"].startswith("inline;")
    assert inline.headers["X-Content-Type-Options"] == "nosniff"
    dl = client.get(f"/health/documents/{did}/content?download=1")
    ext = {"application/pdf": ".pdf", "image/png": ".png", "text/plain": ".txt"}[ctype]
    assert dl.headers["Content-Disposition"] == f'attachment; filename="My-file{ext}"'
    assert dl.data == data


def test_html_documents_are_never_served_inline(app, client, fhir, patient):
    pid, uid = patient
    pd.open_fhir_api(app)
    did = _doc(client, pid, "page", "2024-02-02", ctype="text/html", data=b"<script>alert(1)</script>")
    pd.sign_in(app, client, uid)
    r = client.get(f"/health/documents/{did}/content")
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in r.headers["Content-Security-Policy"]


def test_other_patients_documents_are_not_found(app, client, fhir, patient):
    pid, uid = patient
    other = pd.add_patient(fhir, "Other", "Person")
    pd.open_fhir_api(app)
    did = _doc(client, other, "Not yours", "2024-02-02")
    pd.sign_in(app, client, uid)
    for path in (f"/health/documents/{did}", f"/health/documents/{did}/content"):
        r = client.get(path)
        assert r.status_code == 404 and "Not yours" not in r.get_data(as_text=True)
        assert "<h1>" in r.get_data(as_text=True)
