"""transaction and batch Bundles posted to the base, and the 12 Synthea patients loading through both paths."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from carespace import close_app
from tests.conftest import _new_db_url, make_app, synthea_bundles, synthea_files, trusted_client
from tests.support.fhirapi import count_type, create, ok
from tests.support.synthea import type_counts

PAT = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "T-1"}], "name": [{"family": "Tx"}]}


def obs(subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": subject}}


def entry(resource: dict[str, Any] | None, method: str, url: str, full: str | None = None, **req: str) -> dict[str, Any]:
    out: dict[str, Any] = {"request": {"method": method, "url": url, **req}}
    if resource is not None:
        out["resource"] = resource
    if full:
        out["fullUrl"] = full
    return out


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_transaction_resolves_urn_uuid_references_and_answers_in_request_order(fhir_client: Any) -> None:
    """Entries referring to each other by urn:uuid end up pointing at the new server ids."""
    tx = bundle("transaction", entry(obs("urn:uuid:p"), "POST", "Observation"),
                entry(PAT, "POST", "Patient", "urn:uuid:p"))
    reply = ok(fhir_client.post("/fhir", json=tx))
    assert reply["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in reply["entry"]]
    assert [s.split()[0] for s in statuses] == ["201", "201"]
    obs_loc, pat_loc = (e["response"]["location"] for e in reply["entry"])
    assert obs_loc.startswith("Observation/") and pat_loc.startswith("Patient/")
    stored = ok(fhir_client.get("/fhir/" + obs_loc.split("/_history")[0]))
    assert stored["subject"]["reference"] == pat_loc.split("/_history")[0]


def test_transaction_is_all_or_nothing(fhir_client: Any) -> None:
    """An invalid, a stale or a failing entry in the middle leaves nothing of the others stored."""
    pid = create(fhir_client, PAT)["id"]
    held = create(fhir_client, {"resourceType": "Patient"})["id"]
    create(fhir_client, obs(f"Patient/{held}"))
    middles = [
        (entry({"resourceType": "Patient", "gender": "robot"}, "POST", "Patient"), 422),
        (entry({**PAT, "id": pid}, "PUT", f"Patient/{pid}", ifMatch='W/"7"'), 412),
        (entry(None, "DELETE", "Patient/does-not-exist"), 404),
        (entry(obs("urn:uuid:nowhere"), "POST", "Observation"), 404),
        (entry(None, "DELETE", f"Patient/{held}"), 409),
    ]
    for middle, status in middles:
        tx = bundle("transaction", entry(obs(f"Patient/{pid}"), "POST", "Observation"), middle,
                    entry({**PAT, "id": pid, "gender": "male"}, "PUT", f"Patient/{pid}"))
        oo = ok(fhir_client.post("/fhir", json=tx), status)
        assert oo["resourceType"] == "OperationOutcome" and "entry[1]" in oo["issue"][0]["diagnostics"]
        assert count_type(fhir_client, "Observation") == 1 and count_type(fhir_client, "Patient") == 2
        assert ok(fhir_client.get(f"/fhir/Patient/{pid}"))["meta"]["versionId"] == "1"


def test_conditional_references_resolve_to_the_single_match(fhir_client: Any) -> None:
    """Patient?identifier=... inside a transaction becomes Patient/<id>; none or several matches fail whole."""
    pid = create(fhir_client, PAT)["id"]
    tx = bundle("transaction", entry(obs("Patient?identifier=urn:mrn|T-1"), "POST", "Observation"))
    loc = ok(fhir_client.post("/fhir", json=tx))["entry"][0]["response"]["location"]
    assert ok(fhir_client.get("/fhir/" + loc.split("/_history")[0]))["subject"]["reference"] == f"Patient/{pid}"
    nothing = bundle("transaction", entry(obs("Patient?identifier=urn:mrn|nobody"), "POST", "Observation"))
    assert fhir_client.post("/fhir", json=nothing).status_code == 412
    create(fhir_client, PAT)
    ok(fhir_client.post("/fhir", json=tx), 412)
    assert count_type(fhir_client, "Observation") == 1


def test_if_none_exist_entry_reuses_the_existing_resource_for_every_reference(fhir_client: Any) -> None:
    """A conditional create that finds its match makes urn:uuid references (even earlier ones) point at it."""
    pid = create(fhir_client, PAT)["id"]
    tx = bundle("transaction", entry(obs("urn:uuid:p"), "POST", "Observation"),
                entry(PAT, "POST", "Patient", "urn:uuid:p", ifNoneExist="identifier=urn:mrn|T-1"),
                entry(obs("urn:uuid:p"), "POST", "Observation"))
    reply = ok(fhir_client.post("/fhir", json=tx))
    assert [e["response"]["status"].split()[0] for e in reply["entry"]] == ["201", "200", "201"]
    assert reply["entry"][1]["response"]["location"].startswith(f"Patient/{pid}/")
    for e in (reply["entry"][0], reply["entry"][2]):
        stored = ok(fhir_client.get("/fhir/" + e["response"]["location"].split("/_history")[0]))
        assert stored["subject"]["reference"] == f"Patient/{pid}"
    assert count_type(fhir_client, "Patient") == 1


def test_conditional_update_entry_is_a_urn_uuid_target(fhir_client: Any) -> None:
    """References to a conditional PUT's fullUrl name the resource it updated, or the one it created."""
    pid = create(fhir_client, PAT)["id"]
    for value, existing in (("T-1", pid), ("T-9", None)):
        ident = {"identifier": [{"system": "urn:mrn", "value": value}]}
        tx = bundle("transaction", entry(obs("urn:uuid:p"), "POST", "Observation"),
                    entry({**PAT, **ident}, "PUT", f"Patient?identifier=urn:mrn|{value}", "urn:uuid:p"))
        reply = ok(fhir_client.post("/fhir", json=tx))
        patient = reply["entry"][1]["response"]["location"].split("/_history")[0]
        assert existing is None or patient == f"Patient/{existing}"
        stored = ok(fhir_client.get("/fhir/" + reply["entry"][0]["response"]["location"].split("/_history")[0]))
        assert stored["subject"]["reference"] == patient
    assert count_type(fhir_client, "Patient") == 2


def test_transaction_put_delete_and_get_entries(fhir_client: Any) -> None:
    """PUT with a client id, conditional PUT, DELETE and GET entries run in one transaction."""
    gone = create(fhir_client, {"resourceType": "Patient", "name": [{"family": "Gone"}]})["id"]
    tx = bundle("transaction", entry({**PAT, "id": "tx-1"}, "PUT", "Patient/tx-1"),
                entry({**PAT, "identifier": [{"system": "urn:mrn", "value": "T-2"}]}, "PUT",
                      "Patient?identifier=urn:mrn|T-2"),
                entry(None, "DELETE", f"Patient/{gone}"),
                entry(None, "GET", "Patient?family=Tx"))
    reply = ok(fhir_client.post("/fhir", json=tx))
    assert [e["response"]["status"].split()[0] for e in reply["entry"]] == ["201", "201", "204", "200"]
    assert reply["entry"][3]["resource"]["type"] == "searchset"
    assert reply["entry"][3]["resource"]["total"] == 2
    ok(fhir_client.get(f"/fhir/Patient/{gone}"), 410)
    assert ok(fhir_client.get("/fhir/Patient/tx-1"))["id"] == "tx-1"


def test_batch_entries_succeed_or_fail_on_their_own(fhir_client: Any) -> None:
    """A batch answers each entry with its own status; failures do not undo the others."""
    pid = create(fhir_client, PAT)["id"]
    b = bundle("batch", entry(obs(f"Patient/{pid}"), "POST", "Observation"),
               entry({"resourceType": "Patient", "gender": "robot"}, "POST", "Patient"),
               entry(None, "GET", "Patient/missing"),
               entry(None, "GET", f"Patient/{pid}"),
               entry(None, "DELETE", f"Patient/{pid}"),
               entry({"resourceType": "Observation"}, "BREW", "Observation"))
    reply = ok(fhir_client.post("/fhir", json=b))
    assert reply["type"] == "batch-response"
    codes = [e["response"]["status"].split()[0] for e in reply["entry"]]
    assert codes == ["201", "422", "404", "200", "409", "400"]
    assert reply["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert reply["entry"][3]["resource"]["id"] == pid
    assert count_type(fhir_client, "Observation") == 1


def test_bundle_of_another_type_or_shape_is_400(fhir_client: Any) -> None:
    """Only transaction and batch Bundles can be posted to the base."""
    for body in ({"resourceType": "Bundle", "type": "collection"}, {"resourceType": "Patient"},
                 {"resourceType": "Bundle", "type": "transaction", "entry": {"x": 1}},
                 {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": PAT}]}):
        assert ok(fhir_client.post("/fhir", json=body), 400)["resourceType"] == "OperationOutcome"


def test_all_synthea_bundles_load_through_post_with_exact_type_counts(fhir_client: Any) -> None:
    """Each of the 12 Synthea transactions posts as is; every type's count equals the files' contents."""
    for b in synthea_bundles():
        reply = ok(fhir_client.post("/fhir", json=b))
        assert len(reply["entry"]) == len(b["entry"])
        assert {e["response"]["status"] for e in reply["entry"]} == {"201 Created"}
    for rtype, n in type_counts().items():
        assert count_type(fhir_client, rtype) == n, rtype


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carespace", "import", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def test_carespace_import_loads_synthea_with_progress_and_summary(backend: str, pg_cluster: Any,
                                                                   tmp_path: Path) -> None:
    """`carespace import` prints a progress bar and a summary of counts and rate; the store holds them all."""
    url = _new_db_url(backend, pg_cluster, tmp_path)
    env = {**os.environ, "CARESPACE_INSTANCE_DIR": str(tmp_path / "inst"), "CARESPACE_DATABASE_URL": url}
    done = _cli(env, *map(str, synthea_files()))
    assert done.returncode == 0, done.stderr
    assert "[" + "#" * 30 + "] 12/12 files" in done.stderr
    n = sum(type_counts().values())
    summary = done.stdout.strip().splitlines()[-1]
    assert re.match(rf"imported {n} resources from 12 file\(s\) in [\d.]+ s \([\d,]+ resources/s\): "
                    rf"Observation {type_counts()['Observation']}, ", summary), summary
    app = make_app(url, tmp_path / "inst")
    try:
        client = trusted_client(app)
        assert Counter({t: count_type(client, t) for t in type_counts()}) == type_counts()
    finally:
        close_app(app)


def test_carespace_import_bad_input_is_one_line_error(tmp_path: Path) -> None:
    """Missing, malformed, invalid or unimportable files give one error line and a non-zero exit."""
    env = {**os.environ, "CARESPACE_INSTANCE_DIR": str(tmp_path / "inst"),
           "CARESPACE_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
    (tmp_path / "broken.json").write_text('{"resourceType": "Bundle",')
    (tmp_path / "invalid.json").write_text('{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource":'
                                           ' {"resourceType": "Patient", "gender": "robot"},'
                                           ' "request": {"method": "POST", "url": "Patient"}}]}')
    (tmp_path / "search.json").write_text('{"resourceType": "Bundle", "type": "searchset"}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    for name, words in (("nope.json", "no such file"), ("broken.json", "not valid JSON"), ("deep.json", "not valid JSON"),
                        ("invalid.json", "gender"), ("search.json", "searchset"), ("list.json", "not a FHIR")):
        done = _cli(env, str(tmp_path / name))
        assert done.returncode != 0, name
        lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith("\r") and "error" in ln]
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in done.stderr, (name, done.stderr)
