"""The access matrix: interaction x resource kind x scope form x in or out of the caller's compartment.

Each cell is one HTTP request by Alex's app and its exact status, derived here from the rules in the
README ("Access rules") with a table written by hand, never from the server's own code. Contexts are
built as the SMART resolver builds them from a token (AccessContext.from_scopes), so the matrix runs
the same guard, HTTP layer and fast path as a real token without an OAuth round trip per scope form.
"""
from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest

from fhir_server.access.context import AccessContext
from fhir_server.rest.fastpath import HeaderResolver
from tests.support import access_world as aw

LAB = f"{aw.OBS_CAT}|laboratory"
# form -> (scopes, {type or '*': permission letters}, category the grants are filtered to)
FORMS: dict[str, tuple[list[str], dict[str, str], str | None]] = {
    "v1-read": (["patient/*.read"], {"*": "rs"}, None),
    "v1-write": (["patient/*.write"], {"*": "cud"}, None),
    "v1-all": (["patient/*.*"], {"*": "cruds"}, None),
    "v2-cruds": (["patient/*.cruds"], {"*": "cruds"}, None),
    "v2-rs": (["patient/*.rs"], {"*": "rs"}, None),
    "v2-labs": ([f"patient/Observation.rs?category={LAB}"], {"Observation": "rs"}, "laboratory"),
    "user-cruds": (["user/*.cruds"], {"*": "cruds"}, None),
}
# kind -> (type, Alex's resource, Sam's resource); None: the practice's shared data, one resource for all
KINDS: dict[str, tuple[str, str, str | None]] = {
    "lab": ("Observation", "alex-glucose", "sam-glucose"),
    "vital": ("Observation", "alex-bp", None),
    "condition": ("Condition", "alex-asthma", "sam-hiv"),
    "document": ("DocumentReference", "alex-doc", "sam-psych"),
    "binary": ("Binary", "bin-alex-doc", "bin-sam-psych"),
    "patient": ("Patient", "alex", "sam"),
    "practitioner": ("Practitioner", "chen", None),
}
INTERACTIONS = {"read": "r", "vread": "r", "history": "r", "search": "s", "create": "c", "update": "u",
                "delete": "d"}
SUCCESS = {"read": 200, "vread": 200, "history": 200, "search": 200, "create": 201, "update": 200, "delete": 200}
_fresh = itertools.count()
SAMS: set[tuple[str, str]] = set()  # filled by matrix_app: every (type, id) of Sam's record


def cells() -> list[tuple[str, str, str, str]]:
    out = []
    for form, kind, interaction in itertools.product(FORMS, KINDS, INTERACTIONS):
        places = ["own", "other"] if KINDS[kind][2] else (["shared"] if kind == "practitioner" else ["own"])
        out += [(form, kind, interaction, place) for place in places]
    return out


def expected(form: str, kind: str, interaction: str, place: str) -> int:
    """The status the README's rules give this cell."""
    _, perms, category = FORMS[form]
    rtype = KINDS[kind][0]
    letter = INTERACTIONS[interaction]
    if letter not in perms.get(rtype, perms.get("*", "")):
        return 403  # rule 1: no scope allows it (before anything about the resource is looked at)
    if interaction == "search":
        return 200  # searches answer with what the caller may see (checked entry by entry)
    if place == "shared":
        return 200 if letter == "r" else 403  # rule 3: shared practice data is read-only to patient apps
    if place == "other":
        return 403 if interaction == "create" else 404  # rule 2: another patient's data does not exist
    if category and kind == "vital":
        return 403  # the grant is filtered to laboratory results
    if kind == "patient" and interaction in ("create", "delete"):
        return 403  # registering and closing records is the practice's
    return SUCCESS[interaction]


def _context(form: str) -> AccessContext:
    scopes = FORMS[form][0]
    if form.startswith("user"):
        return AccessContext.from_scopes(scopes, user="Patient/alex", user_patient_ids=["alex"])
    return AccessContext.from_scopes(scopes, patient_id="alex", user="Patient/alex")


@pytest.fixture(scope="module")
def matrix_app(module_app: Any) -> Any:
    SAMS.update(aw.build(module_app.extensions["fhir_service"]).sam_ids)
    contexts = {form: _context(form) for form in FORMS}
    module_app.extensions["fhir_access_resolver"] = HeaderResolver(lambda header: contexts[header.split(" ", 1)[1]])
    return module_app


def _body(kind: str, fid: str, patient: str) -> dict[str, Any]:
    """A valid resource of `kind` for `patient` (the shared kind ignores the patient)."""
    rtype = KINDS[kind][0]
    if kind == "vital":
        return aw.observation(fid, patient, code="8480-6", value=120, category="vital-signs")
    if kind == "lab":
        return aw.observation(fid, patient)
    if rtype == "Condition":
        return {"resourceType": "Condition", "id": fid, "subject": {"reference": f"Patient/{patient}"},
                "code": {"text": "cough"}}
    if rtype == "DocumentReference":
        return {"resourceType": "DocumentReference", "id": fid, "status": "current",
                "subject": {"reference": f"Patient/{patient}"},
                "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}]}
    if rtype == "Binary":
        return {"resourceType": "Binary", "id": fid, "contentType": "text/plain", "data": "aGk=",
                "securityContext": {"reference": f"Patient/{patient}"}}
    if rtype == "Patient":
        return {"resourceType": "Patient", "id": fid, "name": [{"family": "New"}]}
    return {"resourceType": "Practitioner", "id": fid, "name": [{"family": "New"}]}


def _send(client: Any, fhir: Any, form: str, kind: str, interaction: str, place: str) -> tuple[Any, str | None]:
    """One request of the cell; (response, the id a search must return or None for none)."""
    rtype, own, other = KINDS[kind]
    patient = "sam" if place == "other" else "alex"
    target = other if place == "other" else own
    assert target is not None
    headers = {"Authorization": f"Bearer {form}"}
    if interaction == "read":
        return client.get(f"/fhir/{rtype}/{target}", headers=headers), None
    if interaction == "vread":
        return client.get(f"/fhir/{rtype}/{target}/_history/1", headers=headers), None
    if interaction == "history":
        return client.get(f"/fhir/{rtype}/{target}/_history", headers=headers), None
    if interaction == "search":
        visible = place != "other" and not (FORMS[form][2] and kind == "vital")
        return client.get(f"/fhir/{rtype}?_id={target}", headers=headers), target if visible else None
    fid = f"m{next(_fresh)}"
    if interaction == "create":
        body = _body(kind, fid, patient)
        del body["id"]
        return client.post(f"/fhir/{rtype}", json=body, headers=headers), None
    if kind == "patient":  # the records themselves: Alex's and Sam's own Patient resources
        fid = target
    else:
        aw.put(fhir, _body(kind, fid, patient))
    if interaction == "update":
        body = fhir.read(aw.SYS, rtype, fid).json()
        body.pop("meta", None)
        body["language"] = "en"
        return client.put(f"/fhir/{rtype}/{fid}", json=body, headers=headers), None
    return client.delete(f"/fhir/{rtype}/{fid}", headers=headers), None


@pytest.mark.parametrize(("form", "kind", "interaction", "place"), cells(), ids=["-".join(c) for c in cells()])
def test_cell(matrix_app: Any, form: str, kind: str, interaction: str, place: str) -> None:
    fhir = matrix_app.extensions["fhir_service"]
    resp, found = _send(matrix_app.test_client(), fhir, form, kind, interaction, place)
    want = expected(form, kind, interaction, place)
    assert resp.status_code == want, resp.get_data(as_text=True)[:500]
    body = resp.get_json()
    if want >= 400:
        assert body["resourceType"] == "OperationOutcome"
        asked = {f"{KINDS[kind][0]}/{KINDS[kind][2]}"} if place == "other" else set()
        named = set(re.findall(r"[A-Z][A-Za-z]+/[A-Za-z0-9.-]+", json.dumps(body)))
        assert named & {f"{t}/{i}" for t, i in SAMS} <= asked  # names nothing of Sam's that it was not sent
    elif interaction == "search":
        assert [e["resource"]["id"] for e in body.get("entry", [])] == ([found] if found else [])


def test_the_matrix_covers_every_status_of_the_rules() -> None:
    """The table exercises each outcome, so a rule that stopped applying would show as a failing cell."""
    assert {expected(*c) for c in cells()} == {200, 201, 403, 404}
    assert len(cells()) == len(FORMS) * len(INTERACTIONS) * (2 * 5 + 2)
