"""Checklist item 14 (scope grammar) and the scope decisions of the authorization server."""
from __future__ import annotations

import pytest

from fhir_server.access.context import AccessContext, parse_scope
from smart_auth.oauth.scopes import (
    Choices,
    allowed,
    apply_choices,
    covers,
    describe,
    offered_ticked,
    remembered_grant,
    split,
)

CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.mark.parametrize("scope,level,rtype,perms", [
    ("patient/*.read", "patient", "*", "rs"), ("user/Observation.write", "user", "Observation", "cud"),
    ("system/*.*", "system", "*", "cruds"), ("patient/Observation.rs", "patient", "Observation", "rs"),
    ("patient/Patient.r", "patient", "Patient", "r"), ("user/Condition.cruds", "user", "Condition", "cruds"),
    ("system/Patient.s", "system", "Patient", "s"),
])
def test_item14_resource_scope_grammar(scope, level, rtype, perms):
    g = parse_scope(scope)
    assert g is not None and (g.level, g.resource_type, g.permissions) == (level, rtype, frozenset(perms))


def test_item14_v2_query_filters_and_rejects():
    g = parse_scope(f"patient/Observation.rs?category={CAT}|laboratory")
    assert g is not None and g.filters == (("category", f"{CAT}|laboratory"),)
    for bad in ("patient/Observation.sr", "patient/Observation.x", "patient/observation.rs", "openid", "launch"):
        assert parse_scope(bad) is None, bad


def test_item14_context_scopes_kept_and_unknown_dropped():
    got = allowed(split("launch launch/patient openid fhirUser profile offline_access online_access weird "
                        "patient/*.rs system/*.rs"), [], user_flow=True)
    assert got == ["launch", "launch/patient", "openid", "fhirUser", "profile", "offline_access", "online_access",
                   "patient/*.rs"]
    assert allowed(["system/*.read", "patient/*.rs", "openid"], [], user_flow=False) == ["system/*.read"]


def test_registration_limits_and_covers():
    assert covers("patient/*.cruds", "patient/Observation.rs")
    assert covers("patient/Observation.rs", f"patient/Observation.rs?category={CAT}|laboratory")
    assert not covers("patient/Observation.rs", "patient/Observation.cruds")
    assert not covers("user/*.rs", "patient/Observation.rs")
    assert allowed(["patient/Observation.rs", "patient/Condition.rs", "openid"], ["patient/Observation.read", "openid"],
                   user_flow=True) == ["patient/Observation.rs", "openid"]


def test_choices_untick_types_categories_and_offline():
    scopes = ["openid", "offline_access", "patient/Patient.rs", "patient/Observation.read", "patient/Condition.rs"]
    got = apply_choices(scopes, Choices(types=frozenset({"Patient", "Observation"}),
                                        categories=(("Observation", (f"{CAT}|laboratory", f"{CAT}|vital-signs")),),
                                        offline=False))
    assert got == ["openid", "patient/Patient.rs", f"patient/Observation.rs?category={CAT}|laboratory",
                   f"patient/Observation.rs?category={CAT}|vital-signs"]


def test_plain_words():
    assert describe("patient/Observation.rs") == "See lab results, vital signs and other observations"
    assert "until you revoke it" in describe("offline_access")
    assert "only laboratory" in describe(f"patient/Observation.rs?category={CAT}|laboratory")


def test_access_context_user_scopes_are_confined_to_the_persons_patients():
    ctx = AccessContext.from_scopes(["user/*.rs"], user="Patient/1", user_patient_ids=["1", "2"])
    assert ctx.compartment_limit("Observation", ctx.require("Observation", "search")) == frozenset({"1", "2"})
    assert ctx.compartment_limit("Practitioner", ctx.require("Practitioner", "read")) is None
    staff = AccessContext.from_scopes(["user/*.rs"], user="Practitioner/9")
    assert staff.compartment_limit("Observation", staff.require("Observation", "search")) is None
    pat = AccessContext.from_scopes(["patient/*.rs"], patient_id="1")
    assert pat.compartment_limit("Observation", pat.require("Observation", "read")) == frozenset({"1"})
    system = AccessContext.from_scopes(["system/*.rs"])
    assert system.kind == "system" and system.compartment_limit("Observation", system.require("Observation", "read")) \
        is None


def test_consent_prefill_ticks_what_a_wider_grant_covers_and_what_was_never_asked():
    asked, granted = ["launch/patient", "patient/*.rs", "patient/Condition.rs"], ["launch/patient", "patient/*.rs"]
    assert offered_ticked("patient/Observation.rs", asked, granted)  # covered by the wider grant
    assert offered_ticked("offline_access", asked, granted)  # never asked before
    assert not offered_ticked("offline_access", [*asked, "offline_access"], granted)  # declined before
    assert offered_ticked("patient/Observation.rs", ["patient/Observation.rs"],
                          [f"patient/Observation.rs?category={CAT}|laboratory"])  # a category of it was granted
    assert not offered_ticked("patient/Patient.rs", ["patient/Patient.rs"], ["launch/patient"])  # declined before


def test_remembered_grant_answers_only_requests_that_ask_nothing_new():
    asked = granted = ["launch/patient", "offline_access", "patient/*.rs"]
    assert remembered_grant(["launch/patient", "patient/Observation.rs"], asked, granted) == [
        "launch/patient", "patient/Observation.rs"]
    assert remembered_grant(["launch/patient", "openid"], asked, granted) is None
    lab = f"patient/Observation.rs?category={CAT}|laboratory"
    assert remembered_grant(["patient/Observation.rs"], ["patient/Observation.rs"], [lab]) == [lab]
    assert remembered_grant(["patient/Observation.rs", "offline_access"], ["patient/Observation.rs",
                                                                           "offline_access"], []) == []
