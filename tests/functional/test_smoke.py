"""The app starts on each backend, stores a resource and serves it back as stored."""
from __future__ import annotations

from tests.conftest import trusted_client


def test_create_and_read_patient(app):
    client = trusted_client(app)
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Smoke"}]})
    assert r.status_code == 201
    loc = r.headers["Location"].split("/fhir/")[1].split("/_history")[0]
    got = client.get(f"/fhir/{loc}")
    assert got.status_code == 200
    assert got.get_json()["name"][0]["family"] == "Smoke"
    assert got.get_json()["meta"]["versionId"] == "1"


def test_fhir_api_needs_a_token(client):
    r = client.get("/fhir/Patient")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.get_json()["resourceType"] == "OperationOutcome"
