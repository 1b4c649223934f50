"""The app starts on each backend and stores a resource."""
from __future__ import annotations


def test_create_and_read_patient(client):
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Smoke"}]})
    assert r.status_code == 201
    loc = r.headers["Location"].split("/fhir/")[1].split("/_history")[0]
    got = client.get(f"/fhir/{loc}")
    assert got.status_code == 200
    assert got.get_json()["name"][0]["family"] == "Smoke"
    assert got.get_json()["meta"]["versionId"] == "1"
