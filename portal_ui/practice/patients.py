"""Patients for the practice: search (name, birth date, identifier), paged; New patient; one patient."""
from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir_server import AccessContext, FhirError, FhirService, NotFound, Unprocessable, human_name, validate_resource

from ..fhir_data import PortalError, search_page
from . import FormError

PAGE_SIZE = 20
SEXES = {"female": "Female", "male": "Male", "other": "Other", "unknown": "Unknown"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class PatientRow:
    id: str
    name: str
    birth_date: str
    sex: str
    identifiers: str
    email: str
    gender: str = ""


def to_row(res: dict[str, Any]) -> PatientRow:
    email = next((t.get("value", "") for t in res.get("telecom", []) if t.get("system") == "email"), "")
    ids = ", ".join(str(i.get("value")) for i in res.get("identifier", []) if i.get("value")
                    and i.get("system") != "urn:carespace:demo")
    return PatientRow(res.get("id", ""), human_name(res, with_prefix=False) or "(no name)", res.get("birthDate", ""),
                      SEXES.get(res.get("gender", ""), ""), ids, email, res.get("gender", ""))


def _date(value: str, field: str, errors: dict[str, str], label: str = "date of birth") -> str:
    value = (value or "").strip()
    try:
        day = dt.date.fromisoformat(value) if _DATE.match(value) else None
    except ValueError:
        day = None
    if day is None or day.year < 1900 or day > dt.date.today():
        errors[field] = f"Enter a valid {label} (YYYY-MM-DD), not in the future."
    return value


def find(svc: FhirService, ctx: AccessContext, name: str, birth_date: str, identifier: str,
         cursor: str | None) -> tuple[list[PatientRow], str | None, str | None]:
    """One page of patients matching every filter given, sorted by family then given name."""
    items: list[tuple[str, str]] = [("_sort", "family,given"), ("_count", str(PAGE_SIZE))]
    errors: dict[str, str] = {}
    if name.strip():
        items += [("name", part) for part in name.split()[:4]]
    if birth_date.strip():
        items.append(("birthdate", _date(birth_date, "birth_date", errors)))
    if identifier.strip():
        items.append(("identifier", identifier.strip()))
    if errors:
        raise FormError(errors)
    found, nxt, prev = search_page(svc, ctx, "Patient", items, cursor)
    return [to_row(r) for r in found], nxt, prev


def create(svc: FhirService, ctx: AccessContext, form: Mapping[str, str]) -> str:
    """New patient (name, birth date, sex, email), validated as an R4 Patient; returns its id."""
    errors: dict[str, str] = {}
    name = " ".join((form.get("name") or "").split())
    if not name:
        errors["name"] = "Enter the patient's full name, for example Alex Morgan."
    elif len(name) > 200:
        errors["name"] = "The name is too long (at most 200 characters)."
    birth = _date(form.get("birth_date", ""), "birth_date", errors)
    sex = (form.get("sex") or "").strip()
    if sex not in SEXES:
        errors["sex"] = "Choose the sex recorded for the patient."
    email = (form.get("email") or "").strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        errors["email"] = "Enter a valid email address, like name@example.com: the invite goes there."
    if errors:
        raise FormError(errors)
    _, page = svc.search(ctx, "Patient", [("email", email), ("birthdate", birth), ("_count", "1")])
    if page.matches:
        raise FormError({"email": f"A patient with this email and date of birth already exists: "
                                  f"{to_row(json.loads(page.matches[0][2])).name}."})
    parts = name.split()
    body = {"resourceType": "Patient", "active": True,
            "name": [{"use": "official", "text": name, "family": parts[-1], "given": parts[:-1] or parts}],
            "gender": sex, "birthDate": birth, "telecom": [{"system": "email", "value": email}]}
    try:
        validate_resource(body, "Patient")
        return svc.create(ctx, "Patient", body).stored.id
    except Unprocessable as err:
        raise FormError({"name": "This is not a valid patient record: " + err.diagnostics}) from err


def get(svc: FhirService, ctx: AccessContext, patient_id: str) -> PatientRow:
    try:
        return to_row(svc.read(ctx, "Patient", patient_id).json())
    except NotFound:
        raise PortalError("There is no such patient. Search for them on the Patients page.", 404) from None
    except FhirError as err:
        raise PortalError("This patient's record cannot be opened: " + err.diagnostics, 404) from err
