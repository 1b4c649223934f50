"""Bulk Data $export (hl7.org/fhir/uv/bulkdata/export.html) on both backends: kick-off, status, files, jobs.

The Synthea tests check what is exported against the Synthea JSON itself (type counts, each patient's
compartment per compartment_patient.json); the others run on a fresh store with their own settings.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carespace import close_app
from fhir_server import AccessContext
from tests.conftest import _new_db_url, make_app
from tests.support.bulk import ASYNC, auth, backend_token, download, kick_off, resources, wait
from tests.support.fhirapi import matches, ok, q
from tests.support.smart import OBS_CAT, Smart
from tests.support.synthea import SYNTHEA_ID, patients, type_counts

SYS = AccessContext.system("tests")
BULK = "http://hl7.org/fhir/uv/bulkdata"


# ---- Synthea: what is exported is what the JSON holds ------------------------------------------------------
@pytest.fixture(scope="module")
def synthea(synthea_app: Any) -> tuple[Any, Any, str]:
    client = synthea_app.test_client()
    _, token = backend_token(synthea_app, client, "system/*.rs")
    return synthea_app, client, token


def _ids(client: Any, token: str) -> dict[str, str]:
    """Server id of each Synthea patient, by its file name."""
    out = {}
    for p in patients():
        body = ok(client.get(f"/fhir/Patient?identifier={q(SYNTHEA_ID + '|' + p.identifier)}", headers=auth(token)))
        out[p.name] = matches(body)[0]["id"]
    return out


def test_system_export_is_every_synthea_resource(synthea: tuple[Any, Any, str]) -> None:
    app, client, token = synthea
    manifest = wait(client, token, kick_off(client, token))
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert manifest["request"] == "http://localhost/fhir/$export" and "deleted" not in manifest
    assert manifest["transactionTime"][:4] >= "2025"
    got = resources(client, token, manifest)
    counts = Counter({t: len(rs) for t, rs in got.items() if t != "Group"})  # a Group test may have run first
    assert counts == type_counts()
    assert len({r["id"] for r in got["Observation"]}) == type_counts()["Observation"]
    assert sorted(i["type"] for i in manifest["output"]) == sorted(got)  # one file per type (none past the size)


def test_a_scope_for_one_type_exports_that_type_only(synthea: tuple[Any, Any, str]) -> None:
    app, client, _ = synthea
    _, token = backend_token(app, client, "system/Observation.rs")
    manifest = wait(client, token, kick_off(client, token))
    assert [(o["type"], o["count"]) for o in manifest["output"]] == [("Observation", type_counts()["Observation"])]
    refused = client.get("/fhir/$export?_type=Observation,Patient", headers=auth(token, **ASYNC))
    assert ok(refused, 403)["issue"][0]["code"] == "forbidden"


def test_patient_export_is_every_compartment(synthea: tuple[Any, Any, str]) -> None:
    app, client, token = synthea
    manifest = wait(client, token, kick_off(client, token, "/fhir/Patient/$export"))
    want = Counter(r["resourceType"] for p in patients() for r in p.compartment())
    assert Counter({o["type"]: o["count"] for o in manifest["output"]}) == want
    typed = wait(client, token, kick_off(client, token, "/fhir/Patient/$export?_type=Patient,Condition"))
    assert {o["type"]: o["count"] for o in typed["output"]} == {"Patient": 12, "Condition": want["Condition"]}
    # types outside the compartment, when named: what the records refer to (as $everything adds them)
    shared = wait(client, token, kick_off(client, token, "/fhir/Patient/$export?_type=Organization,Practitioner"))
    outside = Counter(r["resourceType"] for p in patients() for r in p.referenced_outside(p.compartment()))
    assert {o["type"]: o["count"] for o in shared["output"]} == {
        t: outside[t] for t in ("Organization", "Practitioner")}


def test_group_export_is_its_members_compartments(synthea: tuple[Any, Any, str]) -> None:
    app, client, token = synthea
    ids = _ids(client, token)
    chosen = [patients()[0], patients()[3]]
    group = app.extensions["fhir_service"].create(SYS, "Group", {
        "resourceType": "Group", "type": "person", "actual": True, "name": "Panel",
        "member": [{"entity": {"reference": f"Patient/{ids[p.name]}"}} for p in chosen]}).stored.id
    manifest = wait(client, token, kick_off(client, token, f"/fhir/Group/{group}/$export"))
    got = resources(client, token, manifest)
    want = Counter(r["resourceType"] for p in chosen for r in p.compartment())
    assert [r["id"] for r in got.pop("Group")] == [group]  # Group is in its members' compartments (member)
    assert Counter({t: len(rs) for t, rs in got.items()}) == want
    assert sorted(r["id"] for r in got["Patient"]) == sorted(ids[p.name] for p in chosen)
    # POST Parameters with `patient`: the members named, no one else
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{ids[chosen[1].name]}"}},
        {"name": "_type", "valueString": "Patient,Encounter"}]}
    one = wait(client, token, kick_off(client, token, f"/fhir/Group/{group}/$export", json=body))
    assert {o["type"]: o["count"] for o in one["output"]} == {
        "Patient": 1, "Encounter": len([r for r in chosen[1].compartment() if r["resourceType"] == "Encounter"])}


# ---- a fresh store ------------------------------------------------------------------------------------
def _app(backend: str, pg_cluster: Any, folder: Path, **extra: Any) -> Any:
    return make_app(_new_db_url(backend, pg_cluster, folder), folder / "instance", **extra)


@pytest.fixture
def bulk(app: Any, client: Any) -> Iterator[tuple[Any, Any, str]]:
    _, token = backend_token(app, client)
    yield app, client, token


def _patient(app: Any, family: str = "Doe") -> str:
    return str(app.extensions["fhir_service"].create(SYS, "Patient", {
        "resourceType": "Patient", "name": [{"family": family}]}).stored.id)


def _obs(app: Any, pid: str, category: str = "laboratory") -> str:
    return str(app.extensions["fhir_service"].create(SYS, "Observation", {
        "resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
        "category": [{"coding": [{"system": OBS_CAT, "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}}).stored.id)


def test_kick_off_needs_prefer_respond_async(bulk: tuple[Any, Any, str]) -> None:
    _, client, token = bulk
    for resp in (client.get("/fhir/$export", headers=auth(token)),
                 client.post("/fhir/Patient/$export", headers=auth(token), json={"resourceType": "Parameters"})):
        assert ok(resp, 400)["resourceType"] == "OperationOutcome"
        assert "respond-async" in resp.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("query", ["_outputFormat=text/csv", "_type=Nonsense", "_since=yesterday",
                                   "_since=2024-01-01", "_typeFilter=Observation", "_typeFilter=Observation?nope=1",
                                   "_type=Patient&_typeFilter=Observation?status=final", "patient=Patient/1",
                                   "_typeFilter=Nonsense?x=1",
                                   "_elements=id"])
def test_parameters_the_export_cannot_honour_are_400(bulk: tuple[Any, Any, str], query: str) -> None:
    _, client, token = bulk
    resp = client.get(f"/fhir/$export?{query}", headers=auth(token, **ASYNC))
    assert ok(resp, 400)["issue"][0]["severity"] == "error"


def test_the_three_ndjson_formats_and_post_parameters_are_accepted(bulk: tuple[Any, Any, str]) -> None:
    app, client, token = bulk
    _patient(app)
    for fmt in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
        resp = client.get(f"/fhir/$export?_outputFormat={q(fmt)}&_type=Patient", headers=auth(token, **ASYNC))
        assert resp.status_code == 202 and resp.headers["Content-Location"].startswith(
            "http://localhost/fhir/$export-status/")
        assert ok(resp, 202)["resourceType"] == "OperationOutcome"
    raw = client.get("/fhir/$export?_outputFormat=application/fhir+ndjson&_since=2020-01-01T00:00:00+00:00",
                     headers=auth(token, **ASYNC))  # '+' unencoded, as some clients send it
    assert raw.status_code == 202, raw.get_data(as_text=True)
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Patient"},
                                                        {"name": "_outputFormat", "valueString": "ndjson"}]}
    manifest = wait(client, token, kick_off(client, token, "/fhir/$export", json=body))
    assert [o["type"] for o in manifest["output"]] == ["Patient"]
    bad = client.post("/fhir/$export", headers=auth(token, **ASYNC), json={"resourceType": "Patient"})
    assert bad.status_code == 400


def test_only_backend_services_tokens_export(app: Any, client: Any, smart: Smart) -> None:
    pid = smart.patient()
    user = smart.user(pid)
    token = smart.launch(user)["access_token"]
    resp = client.get("/fhir/$export", headers=auth(token, **ASYNC))
    assert "system/" in ok(resp, 403)["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/$export", headers=auth(token, **ASYNC)).status_code == 403
    assert client.get("/fhir/$export", headers=ASYNC).status_code == 401


def test_status_progress_and_polling_too_often(backend: str, pg_cluster: Any, tmp_path: Path) -> None:
    app = _app(backend, pg_cluster, tmp_path, EXPORT_WORKER=False, EXPORT_MIN_POLL_S=30.0)
    try:
        client = app.test_client()
        _, token = backend_token(app, client)
        url = kick_off(client, token)
        first = client.get(url, headers=auth(token))
        assert first.status_code == 202 and first.headers["X-Progress"] == "queued"
        assert first.headers["Retry-After"].isdigit()
        again = client.get(url, headers=auth(token))
        assert ok(again, 429)["issue"][0]["code"] == "throttled"
        assert 1 <= int(again.headers["Retry-After"]) <= 30
        assert ok(client.get("/fhir/$export-status/0123abc", headers=auth(token)), 404)["resourceType"] == \
            "OperationOutcome"
    finally:
        close_app(app)


def test_files_belong_to_the_client_that_asked(bulk: tuple[Any, Any, str]) -> None:
    app, client, token = bulk
    _obs(app, _patient(app))
    url = kick_off(client, token)
    manifest = wait(client, token, url)
    file_url = manifest["output"][0]["url"].removeprefix("http://localhost")
    _, other = backend_token(app, client)
    assert client.get(url, headers=auth(other)).status_code == 404
    assert client.delete(url, headers=auth(other)).status_code == 404
    assert client.get(file_url, headers=auth(other)).status_code == 404
    assert client.get(file_url).status_code == 401
    assert client.get(file_url.rsplit("/", 1)[0] + "/Other-1.ndjson", headers=auth(token)).status_code == 404
    assert len(download(client, token, file_url)) == manifest["output"][0]["count"]


def test_delete_cancels_and_removes_the_files(bulk: tuple[Any, Any, str]) -> None:
    app, client, token = bulk
    _obs(app, _patient(app))
    url = kick_off(client, token)
    manifest = wait(client, token, url)
    job = url.rsplit("/", 1)[1]
    folder = Path(app.instance_path) / "exports" / job
    assert sorted(p.name for p in folder.iterdir()) == ["Observation-1.ndjson", "Patient-1.ndjson"]
    assert client.delete(url, headers=auth(token)).status_code == 202
    assert not folder.exists()
    assert client.get(url, headers=auth(token)).status_code == 404
    assert client.get(manifest["output"][0]["url"].removeprefix("http://localhost"),
                      headers=auth(token)).status_code == 404
    # cancelled before it ran: nothing is ever written
    queued = kick_off(client, token)
    assert client.delete(queued, headers=auth(token)).status_code == 202
    assert client.get(queued, headers=auth(token)).status_code == 404


def test_since_exports_what_changed_after_it(bulk: tuple[Any, Any, str]) -> None:
    app, client, token = bulk
    pid = _patient(app)
    first = _obs(app, pid)
    time.sleep(0.01)
    since = app.extensions["fhir_service"].read(SYS, "Observation", first).last_updated
    time.sleep(0.01)
    later = _obs(app, pid)
    manifest = wait(client, token, kick_off(client, token, f"/fhir/$export?_since={q(since)}"))
    got = resources(client, token, manifest)
    assert {t: [r["id"] for r in rs] for t, rs in got.items()} == {"Observation": [later]}
    assert manifest["deleted"] == []
    app.extensions["fhir_service"].delete(SYS, "Observation", first)
    manifest = wait(client, token, kick_off(client, token, f"/fhir/$export?_since={q(since)}"))
    assert [(o["type"], o["count"]) for o in manifest["deleted"]] == [("Bundle", 1)]
    gone = download(client, token, manifest["deleted"][0]["url"])
    assert gone == [{"resourceType": "Bundle", "type": "transaction",
                     "entry": [{"request": {"method": "DELETE", "url": f"Observation/{first}"}}]}]


def test_type_filter_is_a_search(bulk: tuple[Any, Any, str]) -> None:
    app, client, token = bulk
    pid = _patient(app)
    lab = _obs(app, pid, "laboratory")
    _obs(app, pid, "vital-signs")
    query = q(f"Observation?category={OBS_CAT}|laboratory")
    manifest = wait(client, token, kick_off(client, token, f"/fhir/$export?_type=Observation&_typeFilter={query}"))
    assert [r["id"] for r in resources(client, token, manifest)["Observation"]] == [lab]


def test_files_are_split_past_the_size_setting(backend: str, pg_cluster: Any, tmp_path: Path) -> None:
    app = _app(backend, pg_cluster, tmp_path, EXPORT_FILE_MAX_BYTES=1500)
    try:
        client = app.test_client()
        _, token = backend_token(app, client)
        pid = _patient(app)
        made = {_obs(app, pid) for _ in range(12)}
        manifest = wait(client, token, kick_off(client, token, "/fhir/$export?_type=Observation"))
        files = manifest["output"]
        assert len(files) > 1 and [f["url"].rsplit("/", 1)[1] for f in files] == [
            f"Observation-{n}.ndjson" for n in range(1, len(files) + 1)]
        assert {r["id"] for r in resources(client, token, manifest)["Observation"]} == made
    finally:
        close_app(app)


def test_files_are_removed_after_the_retention(bulk: tuple[Any, Any, str]) -> None:
    app, client, token = bulk
    _patient(app)
    url = kick_off(client, token)
    wait(client, token, url)
    service = app.extensions["fhir_exports"]
    folder = service.settings.folder / url.rsplit("/", 1)[1]
    assert folder.is_dir()
    app.extensions["exports"].close()  # the sweep below is the only one (a worker's own would race it)
    service.clock = lambda: time.time() + service.settings.retention_s + 1
    assert client.get(url, headers=auth(token)).status_code == 404  # expired: gone at once for the client
    assert service.sweep() == 1 and not folder.exists()


def test_one_worker_claims_a_job_and_a_dead_workers_job_is_resumed(backend: str, pg_cluster: Any,
                                                                   tmp_path: Path) -> None:
    """Four apps on one database race for one job: one claims it; when its lease runs out another resumes it."""
    apps = [_app(backend, pg_cluster, tmp_path, EXPORT_WORKER=False, EXPORT_MIN_POLL_S=0.0)]
    apps += [make_app(apps[0].config["DATABASE_URL"], tmp_path / f"i{n}", EXPORT_WORKER=False, EXPORT_MIN_POLL_S=0.0)
             for n in range(3)]
    try:
        client = apps[0].test_client()
        _, token = backend_token(apps[0], client)
        _obs(apps[0], _patient(apps[0]))
        url = kick_off(client, token)
        services = [a.extensions["fhir_exports"] for a in apps]
        barrier, won = threading.Barrier(4), []

        def race(svc: Any) -> None:
            barrier.wait()
            won.append(svc.claim())

        threads = [threading.Thread(target=race, args=(s,)) for s in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        job = url.rsplit("/", 1)[1]
        assert [w for w in won if w is not None] == [job] and won.count(None) == 3
        assert client.get(url, headers=auth(token)).headers["X-Progress"] == "started"
        # the claimer died: nobody takes it while its lease holds, the next worker does once it ran out
        alive = services[[w is not None for w in won].index(False)]
        assert alive.claim() is None
        alive.clock = lambda: time.time() + alive.settings.lease_s + 1
        assert alive.claim() == job
        alive.clock = time.time
        alive.run(job)
        manifest = wait(client, token, url)
        assert [o["type"] for o in manifest["output"]] == ["Observation", "Patient"]
    finally:
        for a in apps:
            close_app(a)


def test_a_job_whose_workers_keep_dying_fails_and_the_running_limit_holds(backend: str, pg_cluster: Any,
                                                                         tmp_path: Path) -> None:
    app = _app(backend, pg_cluster, tmp_path, EXPORT_WORKER=False, EXPORT_MIN_POLL_S=0.0, EXPORT_MAX_JOBS=1)
    try:
        client = app.test_client()
        _, token = backend_token(app, client)
        first, second = kick_off(client, token), kick_off(client, token)
        service = app.extensions["fhir_exports"]
        assert service.claim() == first.rsplit("/", 1)[1]
        assert service.claim() is None  # one job at a time (EXPORT_MAX_JOBS=1)
        for n in range(1, service.settings.max_attempts):  # its worker dies, again and again
            service.clock = lambda n=n: time.time() + 10 * n * service.settings.lease_s
            assert service.claim() == first.rsplit("/", 1)[1]
        service.clock = lambda: time.time() + 100 * service.settings.lease_s
        service.sweep()
        failed = client.get(first, headers=auth(token))
        assert ok(failed, 500)["issue"][0]["diagnostics"].startswith("The export stopped 3 times")
        assert service.claim() == second.rsplit("/", 1)[1]
    finally:
        close_app(app)


def test_group_crud_and_search_by_member(bulk: tuple[Any, Any, str]) -> None:
    app, client, token = bulk
    p1, p2, p3 = _patient(app, "One"), _patient(app, "Two"), _patient(app, "Three")
    for p in (p1, p2, p3):
        _obs(app, p)
    admin_id, admin = backend_token(app, client, "system/*.cruds")
    made = client.post("/fhir/Group", headers=auth(admin), json={
        "resourceType": "Group", "type": "person", "actual": True, "name": "Diabetes panel",
        "member": [{"entity": {"reference": f"Patient/{p1}"}}, {"entity": {"reference": f"Patient/{p2}"}}]})
    gid = ok(made, 201)["id"]
    assert [g["id"] for g in matches(ok(client.get(f"/fhir/Group?member=Patient/{p1}", headers=auth(admin))))] == [gid]
    assert matches(ok(client.get(f"/fhir/Group?member=Patient/{p3}", headers=auth(admin)))) == []
    group = ok(client.get(f"/fhir/Group/{gid}", headers=auth(admin)))
    group["member"].append({"entity": {"reference": f"Patient/{p3}"}, "inactive": True})
    assert ok(client.put(f"/fhir/Group/{gid}", headers=auth(admin), json=group))["meta"]["versionId"] == "2"
    manifest = wait(client, token, kick_off(client, token, f"/fhir/Group/{gid}/$export"))
    got = resources(client, token, manifest)
    assert sorted(r["id"] for r in got["Patient"]) == sorted([p1, p2])  # the inactive member is not exported
    assert {r["subject"]["reference"] for r in got["Observation"]} == {f"Patient/{p1}", f"Patient/{p2}"}
    assert [r["id"] for r in got["Group"]] == [gid]  # in its members' compartments (R4: Group.member), once
    assert client.get("/fhir/Group/nope/$export", headers=auth(token, **ASYNC)).status_code == 404
    fhir = app.extensions["fhir_service"]
    mine = fhir.create(SYS, "Device", {"resourceType": "Device", "patient": {"reference": f"Patient/{p1}"}}).stored.id
    fhir.create(SYS, "Device", {"resourceType": "Device", "patient": {"reference": f"Patient/{p3}"}})
    devices = wait(client, token, kick_off(client, token, f"/fhir/Group/{gid}/$export?_type=Device"))
    assert [r["id"] for r in resources(client, token, devices)["Device"]] == [mine]  # outside the compartment
    assert client.delete(f"/fhir/Group/{gid}", headers=auth(admin)).status_code == 200


def test_each_export_is_audited_with_its_counts(bulk: tuple[Any, Any, str]) -> None:
    app, client, token = bulk
    pid = _patient(app)
    _obs(app, pid)
    _obs(app, pid)
    wait(client, token, kick_off(client, token, "/fhir/$export?_type=Patient,Observation"))
    app.extensions["audit_log"].flush()
    texts = [x for _, _, x in app.extensions["fhir_service"].search(SYS, "AuditEvent", [("_count", "100")])[1].matches]
    details = [e["description"] for t in texts for e in json.loads(t).get("entity", []) if e.get("description")]
    assert any(d.startswith("$export queued") for d in details)
    done = [d for d in details if d.startswith("$export completed")]
    assert len(done) == 1 and done[0].endswith(": 3 resources, Observation 2, Patient 1"), done


def test_discovery_advertises_bulk_data(bulk: tuple[Any, Any, str]) -> None:
    _, client, _ = bulk
    cs = ok(client.get("/fhir/metadata"))
    assert f"{BULK}/CapabilityStatement/bulk-data" in cs["instantiates"]
    assert {"name": "export", "definition": f"{BULK}/OperationDefinition/export"} in cs["rest"][0]["operation"]
    patient = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"name": "export", "definition": f"{BULK}/OperationDefinition/patient-export"} in patient["operation"]
    smart = client.get("/fhir/.well-known/smart-configuration").get_json()
    assert "client_credentials" in smart["grant_types_supported"] and "system/*.rs" in smart["scopes_supported"]
    assert "client-confidential-asymmetric" in smart["capabilities"]
    assert smart["bulk_data_operations"][0] == "http://localhost/fhir/$export" and smart["bulk_data_scopes"]

