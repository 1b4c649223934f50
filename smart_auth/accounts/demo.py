"""Demo practice for `carespace demo`: staff user, two patients and a proxy, all able to sign in (idempotent)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fhir_server import AccessContext

from .models import PatientAccess, User
from .passwords import hash_password, verify_password

DEMO = "urn:carespace:demo"
DEMO_PASSWORD = "CareSpace-Demo1!"
CTX = AccessContext.system("demo", notify=False)


@dataclass(frozen=True)
class DemoLogin:
    who: str
    email: str
    password: str
    birth_date: str
    note: str


PATIENTS = [  # key, given, family, gender, birth date, email
    ("patient-alex-morgan", "Alex", "Morgan", "female", "1968-03-21", "alex.morgan@example.com"),
    ("patient-sam-lee", "Sam", "Lee", "male", "1990-11-02", "sam.lee@example.com"),
]
PROXY = ("Jordan Morgan", "1995-07-09", "jordan.morgan@example.com", "patient-alex-morgan")
# Patients in the other registration states, for the practice console: key, given, family, gender, birth, email, state
UNREGISTERED = [
    ("patient-taylor-brooks", "Taylor", "Brooks", "female", "1982-09-17", "taylor.brooks@example.com", "not-invited"),
    ("patient-jamie-rivera", "Jamie", "Rivera", "male", "1974-01-30", "jamie.rivera@example.com", "invited"),
    ("patient-casey-nguyen", "Casey", "Nguyen", "female", "2001-06-08", "casey.nguyen@example.com", "expired"),
]
STAFF = ("Dr. Maya Chen", "1975-05-14", "dr.chen@example.com")


def _conditional(fhir: Any, resource: dict[str, Any], key: str) -> tuple[str, bool]:
    resource = {**resource, "identifier": [{"system": DEMO, "value": key}]}
    res = fhir.create(CTX, resource["resourceType"], resource, if_none_exist=f"identifier={DEMO}|{key}")
    return str(res.stored.id), bool(res.created)


def _labs(fhir: Any, patient_id: str) -> None:
    """A few lab results when the portal's demo_clinical module is not there."""
    labs: list[tuple[str, str, str, list[float]]] = [("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", [92, 104, 97]),
            ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", [14.1, 13.2, 13.8])]
    today = dt.date.today()
    for code, name, unit, values in labs:
        for i, value in enumerate(values):
            when = (today - dt.timedelta(days=120 * (len(values) - 1 - i) + 3)).isoformat()
            _conditional(fhir, {
                "resourceType": "Observation", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": name}], "text": name},
                "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": when,
                "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
            }, f"{patient_id}-lab-{code}-{i}")


def _user(dbs: Session, email: str, name: str, birth_date: str, role: str, fhir_user: str | None) -> User:
    user = dbs.execute(select(User).where(User.email == email)).scalar_one_or_none()
    if user is None:
        user = User(email=email, name=name, birth_date=birth_date, role=role, fhir_user=fhir_user, session_epoch=0)
        dbs.add(user)
    user.status = "active"
    if not verify_password(user.password_hash, DEMO_PASSWORD):
        user.password_hash = hash_password(DEMO_PASSWORD)
    dbs.flush()
    return user


def _access(dbs: Session, user: User, patient_id: str, relationship: str, rp: str | None = None) -> None:
    row = dbs.execute(select(PatientAccess).where(PatientAccess.user_id == user.id,
                                                  PatientAccess.patient_id == patient_id)).scalar_one_or_none()
    if row is None:
        dbs.add(PatientAccess(user_id=user.id, patient_id=patient_id, relationship=relationship,
                              related_person_id=rp, invited_email=user.email, invited_birth_date=user.birth_date,
                              status="active"))


def load_demo(fhir: Any) -> list[DemoLogin]:
    """Create (once) the demo practice, people and sign-ins; returns the logins to print."""
    try:
        from carespace.demo_clinical import add_clinical_demo, practice
    except ImportError:
        add_clinical_demo, practice = None, None  # type: ignore[assignment]
    if practice is not None:
        _org, doc = practice(fhir, CTX)
    else:
        _conditional(fhir, {"resourceType": "Organization", "active": True, "name": "CareSpace Family Practice"},
                     "practice")
        doc, _ = _conditional(fhir, {"resourceType": "Practitioner", "active": True,
                                     "name": [{"text": STAFF[0], "given": ["Maya"], "family": "Chen",
                                               "prefix": ["Dr."]}]}, "dr-chen")
    patients: dict[str, str] = {}
    for key, given, family, gender, birth, email in PATIENTS:
        pid, _created = _conditional(fhir, {
            "resourceType": "Patient", "active": True, "gender": gender, "birthDate": birth,
            "name": [{"text": f"{given} {family}", "given": [given], "family": family}],
            "telecom": [{"system": "email", "value": email}]}, key)
        patients[key] = pid
        if add_clinical_demo is not None:
            add_clinical_demo(fhir, pid)
        else:
            _labs(fhir, pid)
    p_name, p_birth, p_email, of = PROXY
    rp, _ = _conditional(fhir, {"resourceType": "RelatedPerson", "active": True,
                                "patient": {"reference": f"Patient/{patients[of]}"},
                                "name": [{"text": p_name, "given": [p_name.split()[0]],
                                          "family": p_name.split()[-1]}],
                                "telecom": [{"system": "email", "value": p_email}], "birthDate": p_birth,
                                "period": {"start": dt.date.today().isoformat()}}, "proxy-jordan-morgan")
    logins: list[DemoLogin] = []
    with fhir.transaction() as uow:
        dbs: Session = uow.session
        staff = _user(dbs, STAFF[2], STAFF[0], STAFF[1], "staff", f"Practitioner/{doc}")
        logins.append(DemoLogin(STAFF[0], staff.email, DEMO_PASSWORD, staff.birth_date,
                                "practice staff (administrator)"))
        for key, given, family, _g, birth, email in PATIENTS:
            user = _user(dbs, email, f"{given} {family}", birth, "patient", f"Patient/{patients[key]}")
            _access(dbs, user, patients[key], "self")
            logins.append(DemoLogin(user.name, email, DEMO_PASSWORD, birth, "patient"))
        proxy = _user(dbs, p_email, p_name, p_birth, "proxy", None)
        _access(dbs, proxy, patients[of], "proxy", rp)
        owner = next(f"{g} {f}" for k, g, f, *_ in PATIENTS if k == of)
        logins.append(DemoLogin(p_name, p_email, DEMO_PASSWORD, p_birth,
                                f"family member with access to {owner}'s record"))
    _conditional(fhir, {"resourceType": "PractitionerRole", "active": True,
                        "practitioner": {"reference": f"Practitioner/{doc}"},
                        "code": [{"coding": [{"system": "urn:carespace:staff-role", "code": "admin",
                                              "display": "Practice administrator"}],
                                  "text": "Practice administrator"}]}, "dr-chen-admin")
    _unregistered(fhir)
    try:
        from carespace.demo_clinical import add_inbox_demo
    except ImportError:
        return logins
    add_inbox_demo(fhir, patients["patient-alex-morgan"], f"RelatedPerson/{rp}", keys=("rx-refill", "proxy"))
    add_inbox_demo(fhir, patients["patient-sam-lee"], None, reply_to_first=False, keys=("question",))
    return logins


def _unregistered(fhir: Any) -> None:
    """Patients "Not invited", "Invited" (a live link nobody holds) and "Invite expired" for the console."""
    import time

    from .models import AuthToken
    from .security import new_link_token
    for key, given, family, gender, birth, email, state in UNREGISTERED:
        pid, _ = _conditional(fhir, {
            "resourceType": "Patient", "active": True, "gender": gender, "birthDate": birth,
            "name": [{"text": f"{given} {family}", "given": [given], "family": family}],
            "telecom": [{"system": "email", "value": email}]}, key)
        if state == "not-invited":
            continue
        with fhir.transaction() as uow:
            dbs: Session = uow.session
            user = dbs.execute(select(User).where(User.email == email)).scalar_one_or_none()
            if user is None:
                user = User(email=email, name=f"{given} {family}", birth_date=birth, role="patient", status="invited",
                            fhir_user=f"Patient/{pid}", session_epoch=0)
                dbs.add(user)
                dbs.flush()
                dbs.add(PatientAccess(user_id=user.id, patient_id=pid, relationship="self", status="pending"))
            now = time.time()
            live = dbs.execute(select(AuthToken).where(AuthToken.user_id == user.id, AuthToken.purpose == "invite",
                                                       AuthToken.state == "active")).scalars().all()
            wanted_live = state == "invited"
            if any((t.expires_at > now) == wanted_live for t in live):
                continue
            for t in live:
                t.state = "replaced"
            expires = now + 4 * 24 * 3600 if wanted_live else now - 2 * 24 * 3600
            dbs.add(AuthToken(purpose="invite", token_hash=new_link_token()[1], user_id=user.id, access_id=None,
                              expires_at=expires, state="active"))
