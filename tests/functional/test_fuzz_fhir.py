"""Property: no FHIR request, however malformed its resource, Bundle or search, gets a response >= 500.

Hypothesis builds requests from the R4 tables the server uses (types, elements, search parameters,
modifiers) and from arbitrary JSON; each is sent with a real token (a backend service's system/*.*, or a
patient's app), and must be answered, a refusal with an OperationOutcome. Examples are bounded and
derandomized, so the module runs in seconds and the same way in CI.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carespace import close_app
from fhir_server.r4.tables import r4_types, search_params
from fhir_server.search.parse import MODIFIERS, PREFIXES
from tests.conftest import BACKENDS, _new_db_url, make_app
from tests.support.backend import backend_token
from tests.support.postgres import Cluster
from tests.support.r4_minimal import minimal
from tests.support.smart import Smart

TYPES = ["Patient", "Observation", "Encounter", "Condition", "MedicationRequest", "DocumentReference",
         "Communication", "Binary", "AuditEvent", "Organization", "RelatedPerson", "Basic"]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

text = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "x", "Patient/1", "urn:uuid:x", "http://localhost/fhir/Patient/1", "2020-01-01", "ge2020", "1e309",
     "-0", "a|b", "|", "\\,", "%", "_", "\\", "' OR 1=1 --", "\x00", "\ud7ff", "9" * 40])
scalars = st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats(allow_nan=False) | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(text | st.sampled_from(["reference", "resourceType", "id", "url"]),
                                             inner, max_size=3), max_leaves=8)


@pytest.fixture(scope="module", params=BACKENDS)
def callers(request: pytest.FixtureRequest, pg_cluster: Cluster | None,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, dict[str, str]]]]:
    """A fresh app with a patient and an Observation, and the headers of a backend service and a patient's app."""
    folder = tmp_path_factory.mktemp("fuzz")
    app = make_app(_new_db_url(str(request.param), pg_cluster, folder), folder / "instance")
    smart = Smart(app, app.test_client())  # before the app's first request: it adds a route
    pid = smart.patient("Fuzz")
    smart.observation(pid)
    app_token = smart.launch(smart.user(pid), "launch/patient openid fhirUser patient/*.cruds")["access_token"]
    headers = {"system": {"Authorization": f"Bearer {backend_token(smart)}"},
               "patient": {"Authorization": f"Bearer {app_token}"}}
    yield app.test_client(), headers
    close_app(app)


def answered(resp: Any, what: str) -> None:
    """Never a server error; every refusal an OperationOutcome."""
    assert resp.status_code < 500, f"{what} -> {resp.status_code}: {resp.get_data(as_text=True)[:1000]}"
    if resp.status_code >= 400:
        assert resp.get_json()["resourceType"] == "OperationOutcome", resp.get_data(as_text=True)[:500]


@st.composite
def resources(draw: Any) -> dict[str, Any]:
    """A minimal valid resource of a sampled type with some elements replaced by arbitrary JSON."""
    rtype = draw(st.sampled_from(TYPES))
    body = minimal(rtype)
    names = sorted(r4_types()["complex"][rtype]["p"])
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(names) | text)
        body[key] = draw(json_values)
    return body


@st.composite
def criteria(draw: Any, rtype: str, depth: int = 0) -> tuple[str, str]:
    """One search parameter of `rtype`: a modifier, a chain or a `_has` (nested), with an arbitrary value."""
    params = search_params()[rtype]
    kind = draw(st.sampled_from(["plain", "plain", "modifier", "chain", "has", "junk"]))
    name = draw(st.sampled_from(sorted(params) + ["_id", "_lastUpdated"]))
    value = draw(st.sampled_from(PREFIXES) | st.just("")) + draw(text)
    if kind == "modifier":
        ptype = params.get(name, {}).get("type", "token")
        mod = draw(st.sampled_from(sorted(MODIFIERS.get(ptype, {"x"})) + ["Patient", "bogus"]))
        return f"{name}:{mod}", value
    if kind == "chain" and params.get(name, {}).get("type") == "reference":
        target = draw(st.sampled_from(params[name].get("target") or ["Patient"]))
        inner, val = draw(criteria(target, depth + 1)) if target in search_params() else ("name", value)
        return f"{name}:{target}.{inner}", val
    if kind == "has" and depth < 5:
        source = draw(st.sampled_from(TYPES))
        refs = sorted(p for p, s in search_params()[source].items() if s["type"] == "reference") or ["subject"]
        inner, val = draw(criteria(source, depth + 1))
        return f"_has:{source}:{draw(st.sampled_from(refs))}:{inner}", val
    if kind == "junk":
        return draw(text), value
    return name, value


RESULT_PARAMS = st.sampled_from([("_count", "0"), ("_count", "5"), ("_count", "x"), ("_sort", "-_lastUpdated"),
                                 ("_sort", "date,-code"), ("_include", "*"), ("_include", "Observation:subject"),
                                 ("_revinclude", "Provenance:target"), ("_summary", "count"), ("_summary", "bogus"),
                                 ("_elements", "id,status"), ("_total", "accurate"), ("_cursor", "abc"),
                                 ("_elements", ""), ("_include:iterate", "Observation:has-member")])


@st.composite
def nested_has(draw: Any) -> tuple[str, str, str]:
    """(type, key, value): `_has` over Observations nested 1 to 8 deep, each level a valid reference."""
    rtype = draw(st.sampled_from(["Patient", "Observation"]))
    hops = ["_has:Observation:subject:" if rtype == "Patient" else "_has:Observation:derived-from:"]
    hops += draw(st.lists(st.sampled_from(["_has:Observation:derived-from:", "_has:Observation:has-member:"]),
                          max_size=7))
    return rtype, "".join(hops) + draw(st.sampled_from(["code", "status", "subject:Patient.name", "date"])), draw(text)


@st.composite
def searches(draw: Any) -> tuple[str, list[tuple[str, str]]]:
    if draw(st.integers(0, 3)) == 0:
        rtype, key, value = draw(nested_has())
        items = [(key, value)]
    else:
        rtype = draw(st.sampled_from(TYPES))
        items = draw(st.lists(criteria(rtype), min_size=1, max_size=3))
    return rtype, items + draw(st.lists(RESULT_PARAMS, max_size=2))


@SETTINGS
@given(body=resources(), who=st.sampled_from(["system", "patient"]), update=st.booleans())
def test_writing_any_resource_is_answered(callers: Any, body: dict[str, Any], who: str, update: bool) -> None:
    client, headers = callers
    rtype = body["resourceType"]
    if update:
        rid = str(body.get("id")) if isinstance(body.get("id"), str) else "fuzz-1"
        resp = client.put(f"/fhir/{rtype}/{rid}", data=json.dumps(body), headers=headers[who],
                          content_type="application/fhir+json")
    else:
        resp = client.post(f"/fhir/{rtype}", data=json.dumps(body), headers=headers[who],
                           content_type="application/fhir+json")
    answered(resp, f"{'PUT' if update else 'POST'} {json.dumps(body)[:500]}")


@SETTINGS
@given(search=searches(), who=st.sampled_from(["system", "patient"]), post=st.booleans())
def test_any_search_is_answered(callers: Any, search: tuple[str, list[tuple[str, str]]], who: str,
                                post: bool) -> None:
    client, headers = callers
    rtype, items = search
    if post:
        resp = client.post(f"/fhir/{rtype}/_search", data=urlencode(items), headers=headers[who],
                           content_type="application/x-www-form-urlencoded")
    else:
        resp = client.get(f"/fhir/{rtype}?{urlencode(items)}", headers=headers[who])
    answered(resp, f"{rtype}?{urlencode(items)}")


@SETTINGS
@given(types=st.lists(st.sampled_from(TYPES) | text, max_size=3), extra=st.lists(RESULT_PARAMS, max_size=2),
       who=st.sampled_from(["system", "patient"]), history=st.booleans())
def test_system_search_and_history_are_answered(callers: Any, types: list[str], extra: list[tuple[str, str]],
                                                who: str, history: bool) -> None:
    client, headers = callers
    items = ([("_type", ",".join(types))] if types else []) + extra
    path = "/fhir/_history" if history else "/fhir"
    answered(client.get(f"{path}?{urlencode(items)}", headers=headers[who]), f"{path}?{urlencode(items)}")


@st.composite
def entries(draw: Any) -> Any:
    """A well-formed entry (POST, PUT, DELETE or GET of a resource) with up to two of its fields broken."""
    res = draw(resources())
    method = draw(st.sampled_from(["POST", "PUT", "DELETE", "GET"]))
    rtype = res["resourceType"]
    url = rtype if method == "POST" else f"{rtype}/{draw(st.sampled_from(['fuzz-1', 'fuzz-2']))}"
    if method == "PUT":
        res["id"] = url.split("/")[1]
    entry: dict[str, Any] = {"fullUrl": draw(st.sampled_from(["urn:uuid:a", "urn:uuid:b", f"{rtype}/fuzz-1"])),
                             "resource": res, "request": {"method": method, "url": url}}
    for _ in range(draw(st.integers(0, 2))):
        field = draw(st.sampled_from(["fullUrl", "resource", "request", "method", "url", "ifNoneExist", "ifMatch",
                                      "ifNoneMatch", "drop"]))
        value = draw(json_values | st.sampled_from(["identifier=x", 'W/"1"', "Patient?name=x", "urn:uuid:a"]))
        if field == "drop":
            entry.pop(draw(st.sampled_from(["fullUrl", "resource", "request"])), None)
        elif field in ("fullUrl", "resource", "request"):
            entry[field] = value
        elif isinstance(entry.get("request"), dict):
            entry["request"][field] = value
    return draw(st.just(entry) | json_values) if draw(st.integers(0, 9)) == 0 else entry


@SETTINGS
@given(kind=st.sampled_from(["transaction", "batch", "transaction", "batch", "collection", 5]),
       items=st.lists(entries(), min_size=1, max_size=4), who=st.sampled_from(["system", "patient"]))
def test_any_bundle_is_answered(callers: Any, kind: Any, items: list[Any], who: str) -> None:
    client, headers = callers
    bundle = {"resourceType": "Bundle", "type": kind, "entry": items}
    resp = client.post("/fhir", data=json.dumps(bundle), headers=headers[who], content_type="application/fhir+json")
    answered(resp, json.dumps(bundle)[:800])


@SETTINGS
@given(rtype=st.sampled_from(TYPES) | text, rid=text, vid=text, who=st.sampled_from(["system", "patient"]),
       how=st.sampled_from(["read", "vread", "history", "delete", "everything"]))
def test_any_instance_interaction_is_answered(callers: Any, rtype: str, rid: str, vid: str, who: str,
                                              how: str) -> None:
    client, headers = callers
    from urllib.parse import quote
    t, i, v = quote(rtype, safe=""), quote(rid, safe=""), quote(vid, safe="")
    path = {"read": f"/fhir/{t}/{i}", "vread": f"/fhir/{t}/{i}/_history/{v}", "history": f"/fhir/{t}/{i}/_history",
            "delete": f"/fhir/{t}/{i}", "everything": f"/fhir/Patient/{i}/$everything?_type={v}"}[how]
    resp = client.delete(path, headers=headers[who]) if how == "delete" else client.get(path, headers=headers[who])
    if resp.status_code != 404 or resp.is_json:  # a path outside /fhir (e.g. an empty segment) is the portal's 404
        answered(resp, path)
