"""Portal test data: accounts for patients and proxies, signing a test client in, FHIR helpers."""
from __future__ import annotations

from typing import Any

from fhir_server.access.context import AccessContext

PASSWORD = "Portal-Pass1!"
SYS = AccessContext.system("test")


def add_patient(svc: Any, given: str = "Pat", family: str = "Portal", birth: str = "1970-05-04") -> str:
    res = {"resourceType": "Patient", "name": [{"given": [given], "family": family}], "birthDate": birth}
    return str(svc.create(SYS, "Patient", res).stored.id)


def add_user(app: Any, email: str, name: str, birth: str, patient_id: str, relationship: str = "self",
             related_person_id: str | None = None) -> int:
    """An active account with active access to `patient_id` (self or proxy); returns the user id."""
    from smart_auth.accounts import passwords
    from smart_auth.accounts.models import PatientAccess, User
    with app.extensions["carespace.sessions"]() as db:
        user = User(email=email.lower(), name=name, birth_date=birth, role="patient" if relationship == "self" else "proxy",
                    status="active", password_hash=passwords.hash_password(PASSWORD),
                    fhir_user=f"Patient/{patient_id}" if relationship == "self" else None)
        db.add(user)
        db.flush()
        db.add(PatientAccess(user_id=user.id, patient_id=patient_id, relationship=relationship,
                             related_person_id=related_person_id, status="active"))
        db.commit()
        return int(user.id)


def add_proxy(app: Any, svc: Any, patient_id: str, email: str, name: str, birth: str) -> int:
    """A friend or family member with shared access, modelled as a RelatedPerson too."""
    given, _, family = name.partition(" ")
    rp = svc.create(SYS, "RelatedPerson", {"resourceType": "RelatedPerson", "active": True,
                                           "patient": {"reference": f"Patient/{patient_id}"},
                                           "name": [{"given": [given], "family": family or given}]}).stored.id
    return add_user(app, email, name, birth, patient_id, "proxy", rp)


def revoke(app: Any, user_id: int, patient_id: str) -> None:
    from sqlalchemy import update

    from smart_auth.accounts.models import PatientAccess
    with app.extensions["carespace.sessions"]() as db:
        db.execute(update(PatientAccess).where(PatientAccess.user_id == user_id, PatientAccess.patient_id == patient_id)
                   .values(status="revoked"))
        db.commit()


def sign_in(app: Any, client: Any, user_id: int) -> None:
    """Put a real login session (smart_auth.accounts.session.login_user) into the test client's cookie."""
    from flask import session

    from smart_auth.accounts.models import User
    from smart_auth.accounts.session import login_user
    with app.extensions["carespace.sessions"]() as db:
        user = db.get(User, user_id)
        with app.test_request_context():
            login_user(user)
            data = dict(session)
    with client.session_transaction() as sess:
        sess.clear()
        sess.update(data)


def session_cookie(app: Any, user_id: int) -> str:
    """The signed session cookie value of a fresh login (browser tests without the login form)."""
    from flask import session

    from smart_auth.accounts.models import User
    from smart_auth.accounts.session import login_user
    with app.extensions["carespace.sessions"]() as db:
        user = db.get(User, user_id)
        with app.test_request_context():
            login_user(user)
            data = dict(session)
    return str(app.session_interface.get_signing_serializer(app).dumps(data))


def csrf(client: Any, path: str = "/messages/compose") -> str:
    """The CSRF token the form at `path` carries."""
    import re
    html = client.get(path).get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, f"no csrf token on {path}"
    return m.group(1)


def open_fhir_api(app: Any) -> None:
    """Let the test client call /fhir as a trusted system client (the EHR pushing data)."""
    app.extensions["fhir_access_resolver"] = lambda: AccessContext.system("ehr-test")
