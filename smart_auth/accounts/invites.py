"""Practice invitations (patients, staff) and family access (grant, resend, revoke) as RelatedPerson."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fhir_server import AccessContext, FhirError, UnitOfWork, validate_resource

from .core import AccountCore, check_date, normalize_email
from .errors import InputError, NotAllowed
from .models import PatientAccess, User, utcnow

SYSTEM = AccessContext.system("accounts")


@dataclass(frozen=True)
class InviteResult:
    user_id: int
    email: str
    patient_id: str | None
    mail_id: int
    created_patient: bool
    resent: bool


@dataclass(frozen=True)
class SharedUser:
    """One row of Manage Users."""

    access_id: int
    email: str
    name: str
    status: str  # pending | active
    since: str


def _name_of(resource: dict[str, Any]) -> str:
    for name in resource.get("name", []):
        text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
        if text:
            return str(text)
    return ""


def _email_of(resource: dict[str, Any]) -> str | None:
    for t in resource.get("telecom", []):
        if t.get("system") == "email" and t.get("value"):
            return str(t["value"])
    return None


def _human_name(full: str) -> dict[str, Any]:
    parts = full.split()
    return {"text": full, "family": parts[-1], "given": parts[:-1] or parts}


class Invitations:
    """The practice side (invite patients and staff) and the patient side (Manage Users)."""

    def __init__(self, core: AccountCore) -> None:
        self.core = core

    # ---- practice ---------------------------------------------------------------------------------
    def invite_patient(self, *, patient_id: str | None = None, email: str | None = None,
                       birth_date: str | None = None, name: str | None = None,
                       by: tuple[str | None, str] | None = None) -> InviteResult:
        """Create the Patient if needed, the invited account and its own-record access; (re)send the invite.

        `by` is (FHIR reference, name) of the staff member who asked, for the AuditEvent (the CLI: none).
        """
        created = False
        body: dict[str, Any] | None = None
        if patient_id:
            try:
                patient = self.core.fhir.read(SYSTEM, "Patient", patient_id).json()
            except FhirError:
                raise InputError(f"there is no Patient with id {patient_id}") from None
            email = normalize_email(email or _email_of(patient) or "") if (email or _email_of(patient)) else None
            if not email:
                raise InputError(f"Patient {patient_id} has no email address in their record; add --email")
            birth_date = patient.get("birthDate") or (check_date(birth_date) if birth_date else None)
            if not birth_date:
                raise InputError(f"Patient {patient_id} has no birth date in their record; add --birth-date")
            name = _name_of(patient) or name or email
        else:
            if not (email and birth_date and name and name.strip()):
                raise InputError("give --patient-id ID, or --email, --birth-date and --name together")
            email, birth_date, name = normalize_email(email), check_date(birth_date), name.strip()
            with self.core.fhir.sessions() as lookup:
                user = self.core.user_by_email(lookup, email)
            if user is not None and (user.fhir_user or "").startswith("Patient/"):
                patient_id = (user.fhir_user or "").split("/", 1)[1]
            else:
                _req, page = self.core.fhir.search(SYSTEM, "Patient", [("email", email), ("birthdate", birth_date)])
                ids = [fid for _t, fid, _v in page.matches]
                if len(ids) == 1:
                    patient_id = ids[0]
                else:
                    body = {"resourceType": "Patient", "active": True, "name": [_human_name(name)],
                            "birthDate": birth_date, "telecom": [{"system": "email", "value": email}]}
                    validate_resource(body, "Patient")
        with self.core.write() as uow:
            dbs: Session = uow.session
            if body is not None:
                patient_id = self.core.fhir.create_in(uow.fhir, SYSTEM, body).stored.id
                created = True
            assert patient_id is not None and email is not None
            ref = f"Patient/{patient_id}"
            user = self.core.user_by_email(dbs, email)
            if user is not None and user.fhir_user not in (None, ref):
                raise InputError(f"{email} already belongs to another CareSpace account")
            if user is not None and user.status == "active" and user.fhir_user == ref:
                raise InputError(f"{email} has already registered; they can use \u201cForgot password\u201d "
                                 "on the login page")
            resent = user is not None and user.fhir_user == ref
            if user is None:
                user = User(email=email, name=name or email, birth_date=birth_date, role="patient", status="invited",
                            session_epoch=0)
                dbs.add(user)
            user.fhir_user, user.role = ref, "patient"
            dbs.flush()
            access = dbs.execute(select(PatientAccess).where(PatientAccess.user_id == user.id,
                                                             PatientAccess.patient_id == patient_id,
                                                             PatientAccess.relationship == "self")).scalar()
            if access is None:
                access = PatientAccess(user_id=user.id, patient_id=patient_id, relationship="self",
                                       status="active" if user.status == "active" else "pending")
                dbs.add(access)
                dbs.flush()
            mail_id = self.core.issue_link(dbs, "invite", user, None, email, user.name)
            result = InviteResult(user.id, email, patient_id, mail_id, created, resent)
        self.core.audit("invite", None, True, f"{'re-sent' if resent else 'sent'} registration invite to {email}",
                   patient_id, display=by[1] if by else "practice", ref=by[0] if by else None)
        return result

    def invite_staff(self, email: str, name: str, birth_date: str | None = None,
                     by: tuple[str | None, str] | None = None) -> InviteResult:
        """A practice staff account with its Practitioner resource; the invitee sets their password."""
        email, name = normalize_email(email), (name or "").strip()
        if not name:
            raise InputError("give the staff member's --name")
        birth = check_date(birth_date) if birth_date else ""
        with self.core.write() as uow:
            dbs: Session = uow.session
            user = self.core.user_by_email(dbs, email)
            if user is not None and (user.role != "staff" or user.status == "active"):
                raise InputError(f"{email} already has a CareSpace account")
            resent = user is not None
            if user is None:
                body = {"resourceType": "Practitioner", "active": True, "name": [_human_name(name)],
                        "telecom": [{"system": "email", "value": email}]}
                validate_resource(body, "Practitioner")
                pract = self.core.fhir.create_in(uow.fhir, SYSTEM, body).stored.id
                user = User(email=email, name=name, birth_date=birth, role="staff", status="invited",
                            fhir_user=f"Practitioner/{pract}", session_epoch=0)
                dbs.add(user)
                dbs.flush()
            mail_id = self.core.issue_link(dbs, "invite", user, None, email, user.name)
            result = InviteResult(user.id, email, None, mail_id, False, resent)
        self.core.audit("invite", None, True, f"staff invite to {email}", display=by[1] if by else "practice",
                   ref=by[0] if by else None)
        return result

    # ---- Manage Users -------------------------------------------------------------------------------
    def shared_users(self, patient_id: str) -> list[SharedUser]:
        with self.core.fhir.sessions() as dbs:
            rows = dbs.execute(select(PatientAccess, User).outerjoin(User, User.id == PatientAccess.user_id)
                               .where(PatientAccess.patient_id == patient_id, PatientAccess.relationship == "proxy",
                                      PatientAccess.status.in_(("pending", "active")))
                               .order_by(PatientAccess.id)).all()
        return [SharedUser(a.id, (u.email if u and a.status == "active" else a.invited_email) or "",
                           u.name if u and a.status == "active" else "", a.status,
                           a.created_at.strftime("%Y-%m-%d") if a.created_at else "") for a, u in rows]

    def grant(self, owner: User, patient_id: str, email: str, birth_date: str, ctx: AccessContext) -> SharedUser:
        """Full access for a friend or family member: a RelatedPerson, a pending access row, an invite mail."""
        self.require_owner(owner, patient_id)
        email, birth_date = normalize_email(email), check_date(birth_date)
        if email == owner.email.lower():
            raise InputError("That is your own email address: you already have access to your record.")
        today = dt.date.today().isoformat()
        body = {"resourceType": "RelatedPerson", "active": True, "patient": {"reference": f"Patient/{patient_id}"},
                "telecom": [{"system": "email", "value": email}], "birthDate": birth_date,
                "period": {"start": today}}
        validate_resource(body, "RelatedPerson")
        with self.core.write() as uow:
            dbs: Session = uow.session
            dup = dbs.execute(select(PatientAccess.id).outerjoin(User, User.id == PatientAccess.user_id).where(
                PatientAccess.patient_id == patient_id, PatientAccess.relationship == "proxy",
                PatientAccess.status.in_(("pending", "active")),
                (PatientAccess.invited_email == email) | (User.email == email))).first()
            if dup is not None:
                raise InputError(f"{email} already has access or a pending invite. Use \u201cResend invite\u201d if "
                                 "they did not get the email.")
            rp = self.core.fhir.create_in(uow.fhir, ctx, body).stored.id
            access = PatientAccess(user_id=None, patient_id=patient_id, relationship="proxy", related_person_id=rp,
                                   invited_email=email, invited_birth_date=birth_date, status="pending",
                                   created_at=utcnow())
            dbs.add(access)
            dbs.flush()
            self.core.issue_link(dbs, "invite", None, access, email, "", owner.name)
            row = SharedUser(access.id, email, "", "pending", today)
        self.core.audit("grant", owner, True, f"full access granted to {email} (RelatedPerson/{rp})", patient_id)
        return row

    def resend(self, owner: User, patient_id: str, access_id: int) -> None:
        """A new invite link for someone who has not accepted; the old link stops working."""
        self.require_owner(owner, patient_id)
        with self.core.write() as uow:
            dbs: Session = uow.session
            access = self.proxy_access(dbs, patient_id, access_id)
            if access.status != "pending":
                raise InputError("This person has already accepted the invite.")
            self.core.issue_link(dbs, "invite", None, access, access.invited_email or "", "", owner.name)
        self.core.audit("invite", owner, True, f"re-sent access invite to {access.invited_email}", patient_id)

    def revoke(self, owner: User, patient_id: str, access_id: int, ctx: AccessContext) -> str:
        """Ends access at once: access row revoked, RelatedPerson inactive with period.end, app tokens killed."""
        self.require_owner(owner, patient_id)
        with self.core.write() as uow:
            dbs: Session = uow.session
            access = self.proxy_access(dbs, patient_id, access_id)
            access.status, access.revoked_at = "revoked", utcnow()
            from .models import AuthToken
            for tok in dbs.execute(select(AuthToken).where(AuthToken.access_id == access.id,
                                                           AuthToken.state == "active")).scalars():
                tok.state = "revoked"
            user = dbs.get(User, access.user_id) if access.user_id else None
            who = user.email if user else access.invited_email or ""
            if access.related_person_id:
                self.end_related_person(uow, ctx, access.related_person_id)
        if access.user_id is not None:
            self.core.run_hooks("on_access_revoked", access.user_id, patient_id)
        self.core.audit("revoke", owner, True, f"access revoked for {who}", patient_id)
        return who

    def end_related_person(self, uow: UnitOfWork, ctx: AccessContext, rp_id: str) -> None:
        current = self.core.fhir.read(SYSTEM, "RelatedPerson", rp_id).json()
        current.pop("meta", None)
        current["active"] = False
        current["period"] = {**current.get("period", {}), "end": dt.date.today().isoformat()}
        self.core.fhir.update_in(uow.fhir, ctx, "RelatedPerson", rp_id, current)

    @staticmethod
    def proxy_access(dbs: Session, patient_id: str, access_id: int) -> PatientAccess:
        access = dbs.get(PatientAccess, access_id)
        if (access is None or access.patient_id != patient_id or access.relationship != "proxy"
                or access.status == "revoked"):
            raise InputError("That person no longer has access or a pending invite.")
        return access

    def require_owner(self, owner: User, patient_id: str) -> None:
        """Only the patient manages who may see their record."""
        with self.core.fhir.sessions() as dbs:
            mine = dbs.execute(select(PatientAccess.id).where(
                PatientAccess.user_id == owner.id, PatientAccess.patient_id == patient_id,
                PatientAccess.relationship == "self", PatientAccess.status == "active")).first()
        if mine is None:
            raise NotAllowed("Only the patient can manage who has access to their record.")
