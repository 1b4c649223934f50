"""Registration: the "Complete Your Registration" link sets a password (or accepts shared access) and is used up."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from .core import LINK_ADVICE, AccountCore, check_date
from .errors import InputError, LinkProblem
from .models import PatientAccess, User
from .passwords import hash_password


@dataclass(frozen=True)
class LinkInfo:
    """What a valid registration link is for, so the form asks for the right fields."""

    user: User | None
    access: PatientAccess | None
    email: str
    needs_birth_date: bool
    needs_name: bool
    existing_account: bool  # the invitee already has an active account: accepting needs no new password


class Registrations:
    """Completing a registration link: set a password, or accept shared access with an existing account."""

    def __init__(self, core: AccountCore) -> None:
        self.core = core

    def link_info(self, token: str) -> LinkInfo:
        with self.core.fhir.sessions() as dbs:
            return self._link_info(dbs, token)

    def _link_info(self, dbs: Session, token: str) -> LinkInfo:
        row = self.core.valid_token(dbs, token, "invite")
        access = dbs.get(PatientAccess, row.access_id) if row.access_id else None
        if access is not None and access.relationship == "proxy":
            if access.status != "pending":
                raise LinkProblem("This invitation was withdrawn or already accepted. " + LINK_ADVICE, "revoked")
            email = access.invited_email or ""
            user = self.core.user_by_email(dbs, email)
            existing = user is not None and user.status == "active"
            return LinkInfo(user, access, email, True, user is None, existing)
        user = dbs.get(User, row.user_id) if row.user_id else None
        if user is None or user.status == "disabled":
            raise LinkProblem("This registration link no longer works. " + LINK_ADVICE, "revoked")
        return LinkInfo(user, access, user.email, not user.birth_date, False, False)

    def register(self, token: str, password: str, confirm: str, birth_date: str = "", name: str = "") -> User:
        """Set the password (or accept shared access for an existing account) and use up the link."""
        with self.core.write() as uow:
            dbs: Session = uow.session
            info = self._link_info(dbs, token)
            self.core.use_token(dbs, token, "invite")  # used once, across processes; undone if this unit fails
            if info.needs_birth_date:
                birth_date = check_date(birth_date)
            if info.access is not None and info.access.relationship == "proxy":
                if birth_date != info.access.invited_birth_date or (
                        info.user is not None and info.user.birth_date and info.user.birth_date != birth_date):
                    raise InputError("This date of birth does not match the one given when you were invited. "
                                     "Check it, or ask the person who invited you to invite you again.")
            if info.needs_name and not (name or "").strip():
                raise InputError("Enter your full name.")
            if info.existing_account:
                user = info.user
                assert user is not None
            else:
                self.core.check_new_password(password, confirm)
                user = info.user or User(email=info.email, name=name.strip()[:200], birth_date=birth_date,
                                         role="proxy", session_epoch=0)
                if user.id is None:
                    dbs.add(user)
                if info.needs_birth_date and not user.birth_date:
                    user.birth_date = birth_date
                if name.strip() and not user.name:
                    user.name = name.strip()[:200]
                user.password_hash = hash_password(password)
                user.status = "active"
                dbs.flush()
            if info.access is not None:
                info.access.user_id = user.id
                info.access.status = "active"
            else:  # the patient's own record opens with the registration
                dbs.execute(update(PatientAccess).where(PatientAccess.user_id == user.id,
                                                        PatientAccess.relationship == "self",
                                                        PatientAccess.status == "pending")
                            .values(status="active").execution_options(synchronize_session=False))
            patient_id = info.access.patient_id if info.access is not None else self.core.own_patient(user)
        self.core.audit("register", user, True, "registration completed" if not info.existing_account
                   else "shared access accepted", patient_id)
        return user
