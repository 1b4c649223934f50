"""SMART scope handling for the authorization server: what a client may ask for, plain-words
descriptions for the consent page, and the user's choices (limited access, category sub-scopes).

Enforcement of granted scopes is fhir_server.access (the guard); this module only decides what is granted.
"""
from __future__ import annotations

from dataclasses import dataclass

from fhir_server import ScopeGrant, parse_scope

CONTEXT_SCOPES = ("openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
                  "offline_access", "online_access")
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CAT = "http://terminology.hl7.org/CodeSystem/condition-category"
US_CORE_COND_CAT = "http://hl7.org/fhir/us/core/CodeSystem/condition-category"
US_CORE_CAT = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category"
# Category sub-scopes the consent page offers instead of a whole resource type.
CATEGORY_CHOICES: dict[str, list[tuple[str, str]]] = {
    "Observation": [(f"{OBS_CAT}|laboratory", "Lab results"), (f"{OBS_CAT}|vital-signs", "Vital signs"),
                    (f"{OBS_CAT}|social-history", "Social history"), (f"{OBS_CAT}|survey", "Surveys"),
                    (f"{US_CORE_CAT}|sdoh", "Social needs (SDOH)")],
    "Condition": [(f"{COND_CAT}|problem-list-item", "Problem list"),
                  (f"{COND_CAT}|encounter-diagnosis", "Visit diagnoses"),
                  (f"{US_CORE_COND_CAT}|health-concern", "Health concerns")],
}
LABELS = {
    "*": "all of the health record", "Patient": "demographics (name, birth date, contact details)",
    "Observation": "lab results, vital signs and other observations", "Condition": "conditions and problems",
    "DocumentReference": "documents", "Binary": "document files", "Communication": "messages",
    "MedicationRequest": "prescriptions", "AllergyIntolerance": "allergies", "Immunization": "immunizations",
    "Procedure": "procedures", "Encounter": "visits", "DiagnosticReport": "reports", "CarePlan": "care plans",
    "CareTeam": "care team", "Goal": "goals", "Practitioner": "clinicians", "Organization": "organizations",
    "RelatedPerson": "family and friends with access", "Provenance": "record provenance",
}
_VERBS = (("r", "see"), ("s", "search"), ("c", "add"), ("u", "change"), ("d", "delete"))
_V2 = {"read": "rs", "write": "cud", "*": "cruds"}


def split(scope: str | None) -> list[str]:
    """Scopes of a space-separated string, without duplicates, in the order given."""
    out: list[str] = []
    for s in (scope or "").split():
        if s not in out:
            out.append(s)
    return out


def _perm_text(scope: str) -> str:
    return scope.split(".", 1)[1].split("?", 1)[0] if "." in scope else ""


def covers(general: str, specific: str) -> bool:
    """True when scope `general` allows at least what `specific` asks for."""
    if general == specific:
        return True
    g, s = parse_scope(general), parse_scope(specific)
    if g is None or s is None or g.level != s.level:
        return False
    return (g.resource_type in ("*", s.resource_type) and g.permissions >= s.permissions
            and (not g.filters or g.filters == s.filters))


def allowed(requested: list[str], registered: list[str], *, user_flow: bool) -> list[str]:
    """Requested scopes this client may receive: known, within its registration, no system/ for users."""
    out = []
    for s in requested:
        g = parse_scope(s)
        if g is None and s not in CONTEXT_SCOPES:
            continue  # unknown scopes are dropped, not refused (clients send extras such as 'profile')
        if g is not None and user_flow and g.level == "system":
            continue
        if g is not None and not user_flow and g.level != "system":
            continue
        if g is None and not user_flow:
            continue
        if registered and not any(covers(r, s) for r in registered):
            continue
        out.append(s)
    return out


def resource_types(scopes: list[str]) -> list[str]:
    """Resource types (or '*') the resource scopes name, in order."""
    out: list[str] = []
    for s in scopes:
        g = parse_scope(s)
        if g is not None and g.resource_type not in out:
            out.append(g.resource_type)
    return out


def describe(scope: str) -> str:
    """One scope in plain words, for the consent page and Connected apps."""
    fixed = {"openid": "Know who you are", "fhirUser": "Know who you are in the record",
             "profile": "Know who you are", "launch": "Open with the record you are viewing",
             "launch/patient": "Know whose record you chose", "launch/encounter": "Know the current visit",
             "offline_access": "Keep access when you are not using it, until you revoke it",
             "online_access": "Keep access while you are signed in"}
    if scope in fixed:
        return fixed[scope]
    g = parse_scope(scope)
    if g is None:
        return scope
    return _grant_words(g)


def _grant_words(g: ScopeGrant) -> str:
    verbs = [w for letter, w in _VERBS if letter in g.permissions]
    if "search" in verbs and "see" in verbs:
        verbs.remove("search")
    label = LABELS.get(g.resource_type, g.resource_type)
    what = f"{', '.join(verbs[:-1])} and {verbs[-1]}" if len(verbs) > 1 else verbs[0]
    text = f"{what.capitalize()} {label}"
    if g.filters:
        cats = [v.split("|")[-1].replace("-", " ") for _, v in g.filters]
        text += f" (only {', '.join(cats)})"
    return text


@dataclass(frozen=True)
class Choices:
    """What the user decided on the consent page."""

    types: frozenset[str] | None = None  # resource types left ticked (None: all)
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()  # type -> category values chosen instead
    offline: bool = True


def apply_choices(scopes: list[str], choices: Choices) -> list[str]:
    """The granted scope list: unticked types removed, category sub-scopes swapped in."""
    cats = dict(choices.categories)
    out: list[str] = []
    for s in scopes:
        g = parse_scope(s)
        if s == "offline_access" and not choices.offline:
            continue
        if g is None:
            out.append(s)
            continue
        if choices.types is not None and g.resource_type not in choices.types:
            continue
        chosen = cats.get(g.resource_type)
        if chosen and not g.filters:
            perm = _V2.get(_perm_text(s), _perm_text(s))
            out.extend(f"{g.level}/{g.resource_type}.{perm}?category={c}" for c in chosen)
            continue
        out.append(s)
    return [s for i, s in enumerate(out) if s not in out[:i]]


def offered_ticked(scope: str, asked: list[str], granted: list[str]) -> bool:
    """Consent prefill: ticked when an earlier grant covers `scope` (or part of it, such as a category), or when
    it was never asked before (offered as the first time); unticked only when the user declined it before."""
    if any(covers(g, scope) or covers(scope, g) for g in granted):
        return True
    return not any(covers(a, scope) for a in asked)


def remembered_grant(requested: list[str], asked: list[str], granted: list[str]) -> list[str] | None:
    """A repeated request answered from the remembered decision: None when it asks for anything not asked before
    (the consent page is shown); else each requested scope an earlier grant covers, or the narrower scopes of
    that grant it covers (categories), never more than requested."""
    if not all(any(covers(a, r) for a in asked) for r in requested):
        return None
    out: list[str] = []
    for r in requested:
        if any(covers(g, r) for g in granted):
            out.append(r)
        else:
            out.extend(g for g in granted if covers(r, g))
    return [s for i, s in enumerate(out) if s not in out[:i]]


def has_patient_scopes(scopes: list[str]) -> bool:
    return any((g := parse_scope(s)) is not None and g.level == "patient" for s in scopes)
