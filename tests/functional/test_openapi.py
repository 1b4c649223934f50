"""/fhir/openapi.json describes what the CapabilityStatement lists, and schemathesis driving it gets no 5xx.

The description is generated from the statement (fhir_server/rest/openapi.py); schemathesis generates
requests from it, valid (positive) and invalid (negative) ones, for the system interactions and every
interaction of a sample of types, with a real backend-services token, and a bounded number of examples.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from carespace import close_app
from fhir_server.r4.tables import compartment_params
from fhir_server.rest.openapi import openapi_description
from tests.conftest import BACKENDS, _new_db_url, make_app
from tests.support.backend import backend_token
from tests.support.data import ROOT
from tests.support.fhirapi import ok
from tests.support.postgres import Cluster
from tests.support.smart import Smart

TYPES = ["Patient", "Observation", "Binary", "AuditEvent"]
EXAMPLES = 3  # per operation and generation mode: about 250 requests in all, well under a minute on SQLite
_STATEMENT = json.loads((ROOT / "fhir_server" / "capability_statement.json").read_text())
_DESCRIPTION = openapi_description({**_STATEMENT, "url": "http://localhost/fhir/metadata"})
# (method, path, mode): invalid requests only where the operation takes input that can be invalid
CASES = [(method.upper(), path, mode) for path, item in _DESCRIPTION["paths"].items()
         for method, op in item.items() if method != "parameters" and op["tags"][0] in ("system", *TYPES)
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode == GenerationMode.POSITIVE or op.get("parameters") or item.get("parameters") or op.get("requestBody")]


@pytest.fixture(scope="module", params=BACKENDS)
def api(request: pytest.FixtureRequest, pg_cluster: Cluster | None,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    """The schema loaded from a fresh app, and the headers of a system/*.* backend client."""
    folder = tmp_path_factory.mktemp("openapi")
    app = make_app(_new_db_url(str(request.param), pg_cluster, folder), folder / "instance")
    smart = Smart(app, app.test_client())  # before the app's first request: it adds a route
    token = backend_token(smart)
    schema = schemathesis.openapi.from_wsgi("/fhir/openapi.json", app)
    schema.config.analysis.constants.enabled = False  # it would read the installed package's source files
    yield schema, {"Authorization": f"Bearer {token}"}
    close_app(app)


def test_the_description_is_the_capability_statement(module_client: Any) -> None:
    """Each advertised interaction is an operation, and nothing else is (checked both ways)."""
    cs = ok(module_client.get("/fhir/metadata"))
    doc = ok(module_client.get("/fhir/openapi.json"))
    assert doc["openapi"].startswith("3.0") and doc["servers"] == [{"url": "http://localhost/fhir"}]
    ops = {op["operationId"] for item in doc["paths"].values() for m, op in item.items() if m != "parameters"}
    system = {c["code"] for c in cs["rest"][0]["interaction"]}
    want = {"capabilities", "transaction"} | (system & {"search-system", "history-system"})
    want |= {o["name"] for o in cs["rest"][0].get("operation", [])}  # system-level operations ($export)
    assert {"transaction", "batch"} <= system  # one operation (POST to the base) for both
    for r in cs["rest"][0]["resource"]:
        t, codes = r["type"], {c["code"] for c in r["interaction"]}
        want |= {f"{c}-{t}" for c in codes} | ({f"search-type-post-{t}"} if "search-type" in codes else set())
        want |= {f"conditional-update-{t}"} if r["conditionalUpdate"] else set()
        want |= {f"conditional-delete-{t}"} if r["conditionalDelete"] != "not-supported" else set()
        want |= {f"{o['name']}-{t}" for o in r.get("operation", [])}
        if "search-type" in codes and compartment_params(t) and cs["rest"][0].get("compartment"):
            want.add(f"search-compartment-{t}")  # GET Patient/{id}/{type}
    assert ops == want
    assert "put" not in doc["paths"]["/AuditEvent/{id}"] and "delete" not in doc["paths"]["/AuditEvent/{id}"]
    params = {p["name"] for p in doc["paths"]["/Observation"]["get"]["parameters"]}
    assert {p["name"] for p in next(r for r in cs["rest"][0]["resource"] if r["type"] == "Observation")[
        "searchParam"]} <= params


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_no_generated_request_gets_a_server_error(api: tuple[Any, dict[str, str]], method: str, path: str,
                                                  mode: GenerationMode) -> None:
    """Generated requests (valid, or invalid in one part) are answered, refusals with an OperationOutcome."""
    schema, headers = api
    operation = schema[path][method]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        resp = case.call(headers=headers)
        assert resp.status_code < 500, f"{case.as_curl_command()} -> {resp.status_code}: {resp.text[:1000]}"
        if resp.status_code >= 400:
            assert resp.json()["resourceType"] == "OperationOutcome", resp.text[:500]

    check()
