"""Staff administration for the practice's administrators: who is staff, invite, disable, the admin role.

An administrator is a staff member whose Practitioner has an active PractitionerRole with the code
urn:carespace:staff-role|admin (FHIR data, looked up on every request).  No Flask here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select

from fhir_server import AccessContext

from .errors import InputError
from .invites import InviteResult
from .models import User
from .service import Accounts
from .signins import SignIns

ROLE_SYSTEM = "urn:carespace:staff-role"
_TRUSTED = AccessContext.system("staff-admin")


@dataclass(frozen=True)
class StaffRow:
    user_id: int
    name: str
    email: str
    status: str  # invited | active | disabled
    admin: bool
    practitioner: str


def is_admin(accounts: Accounts, practitioner_ref: str | None) -> bool:
    if not practitioner_ref or not practitioner_ref.startswith("Practitioner/"):
        return False
    _, page = accounts.core.fhir.search(_TRUSTED, "PractitionerRole", [
        ("practitioner", practitioner_ref), ("role", f"{ROLE_SYSTEM}|admin"), ("active", "true"), ("_count", "1")])
    return bool(page.matches)


def admins(accounts: Accounts) -> set[str]:
    _, page = accounts.core.fhir.search(_TRUSTED, "PractitionerRole", [
        ("role", f"{ROLE_SYSTEM}|admin"), ("active", "true"), ("_count", "500")])
    out = set()
    for _t, _i, text in page.matches:
        ref = (json.loads(text).get("practitioner") or {}).get("reference")
        if isinstance(ref, str):
            out.add(ref)
    return out


def make_admin(accounts: Accounts, practitioner_ref: str) -> None:
    """Give a staff member the administrator role (idempotent)."""
    if is_admin(accounts, practitioner_ref):
        return
    accounts.core.fhir.create(_TRUSTED, "PractitionerRole", {
        "resourceType": "PractitionerRole", "active": True, "practitioner": {"reference": practitioner_ref},
        "code": [{"coding": [{"system": ROLE_SYSTEM, "code": "admin", "display": "Practice administrator"}],
                  "text": "Practice administrator"}]})


def staff_list(accounts: Accounts) -> list[StaffRow]:
    with accounts.core.fhir.sessions() as dbs:
        users = dbs.execute(select(User).where(User.role == "staff").order_by(User.name)).scalars().all()
        rows = [(u.id, u.name, u.email, u.status, u.fhir_user or "") for u in users]
    admin = admins(accounts)
    return [StaffRow(i, n, e, s, ref in admin, ref) for i, n, e, s, ref in rows]


def invite(accounts: Accounts, email: str, name: str, admin: bool, by: tuple[str | None, str]) -> InviteResult:
    """Invite a staff member (the CLI's invite-staff), optionally as an administrator."""
    result = accounts.invitations.invite_staff(email, name, by=by)
    if admin:
        with accounts.core.fhir.sessions() as dbs:
            user = dbs.get(User, result.user_id)
            ref = user.fhir_user if user else None
        if ref:
            make_admin(accounts, ref)
    return result


def disable(accounts: Accounts, user_id: int, by_user_id: int, by: tuple[str | None, str]) -> str:
    """Disable a staff account at once: sessions end (epoch bumped), app tokens are revoked."""
    if user_id == by_user_id:
        raise InputError("You cannot disable your own account; ask another administrator.")
    with accounts.core.write() as uow:
        user = uow.session.get(User, user_id)
        if user is None or user.role != "staff":
            raise InputError("There is no such staff member.")
        if user.status == "disabled":
            return user.email
        user.status = "disabled"
        user.session_epoch = (user.session_epoch or 0) + 1
        SignIns.end_all(uow.session, user.id)
        email = user.email
    accounts.core.run_hooks("on_password_reset", user_id)
    accounts.core.audit("disable", None, True, f"staff account {email} disabled", display=by[1], ref=by[0])
    return email
