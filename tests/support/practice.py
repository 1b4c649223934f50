"""Practice console test data: a staff member (Practitioner + staff account) signed in to a test client."""
from __future__ import annotations

import re
from typing import Any

from tests.support import portal_data as pd


def add_staff(app: Any, fhir: Any, name: str = "Maya Chen", email: str = "staff@example.com",
              birth: str = "1975-05-14", totp_secret: str | None = None) -> tuple[int, str]:
    """An active staff account with its Practitioner; returns (user id, Practitioner id)."""
    from smart_auth.accounts import passwords
    from smart_auth.accounts.models import User
    given, _, family = name.partition(" ")
    pract = fhir.create(pd.SYS, "Practitioner", {"resourceType": "Practitioner", "active": True,
                                                 "name": [{"given": [given], "family": family or given}]}).stored.id
    with app.extensions["carespace.sessions"]() as db:
        user = User(email=email, name=name, birth_date=birth, role="staff", status="active",
                    password_hash=passwords.hash_password(pd.PASSWORD), fhir_user=f"Practitioner/{pract}",
                    totp_secret=totp_secret)
        db.add(user)
        db.commit()
        return int(user.id), str(pract)


def token(client: Any, path: str = "/practice/patients/new") -> str:
    html = client.get(path).get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, f"no csrf token on {path}"
    return m.group(1)


def patient(fhir: Any, given: str = "Pat", family: str = "Portal", birth: str = "1970-05-04",
            email: str | None = None, gender: str = "female", identifier: str | None = None) -> str:
    body: dict[str, Any] = {"resourceType": "Patient", "name": [{"given": [given], "family": family}],
                            "birthDate": birth, "gender": gender}
    if email:
        body["telecom"] = [{"system": "email", "value": email}]
    if identifier:
        body["identifier"] = [{"system": "urn:example:mrn", "value": identifier}]
    return str(fhir.create(pd.SYS, "Patient", body).stored.id)


def search(fhir: Any, rtype: str, items: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    import json
    _, page = fhir.search(pd.SYS, rtype, [*(items or []), ("_count", "500")])
    return [json.loads(t) for _, _, t in page.matches]
