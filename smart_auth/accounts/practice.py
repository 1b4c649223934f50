"""What the practice console needs to know about patients' accounts: registration status, the people
with shared access and the last sign-in.  No Flask; the console's views call these with primitives."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from fhir_server import AccessContext

from .invites import SharedUser
from .models import AuthToken, User
from .service import Accounts

NOT_INVITED, INVITED, EXPIRED, REGISTERED = "Not invited", "Invited", "Invite expired", "Registered"
_LOG = AccessContext.system("practice-console")


@dataclass(frozen=True)
class Registration:
    """A patient's account as the practice sees it."""

    status: str  # Not invited | Invited | Invite expired | Registered
    email: str | None
    expires: str | None  # YYYY-MM-DD of the open invite
    last_sign_in: str | None  # FHIR instant
    shared: list[SharedUser]

    @property
    def action(self) -> str | None:
        """The button the patient page offers: "Invite", "Resend invite" or none (registered)."""
        return {NOT_INVITED: "Invite", INVITED: "Resend invite", EXPIRED: "Resend invite"}.get(self.status)


def _status(user: User | None, token: AuthToken | None, now: float) -> tuple[str, str | None]:
    if user is None:
        return NOT_INVITED, None
    if user.status == "active":
        return REGISTERED, None
    if token is not None and token.state == "active" and token.expires_at > now:
        return INVITED, dt.datetime.fromtimestamp(token.expires_at, dt.UTC).date().isoformat()
    return EXPIRED, None


def statuses(accounts: Accounts, patient_ids: Iterable[str]) -> dict[str, str]:
    """Registration status of each patient (one query for a page of patients)."""
    ids = list(patient_ids)
    refs = {f"Patient/{p}": p for p in ids}
    now = accounts.core.clock()
    out = dict.fromkeys(ids, NOT_INVITED)
    if not ids:
        return out
    with accounts.core.fhir.sessions() as dbs:
        users = dbs.execute(select(User).where(User.fhir_user.in_(list(refs)))).scalars().all()
        by_user = {u.id: u for u in users}
        tokens: dict[int, AuthToken] = {}
        if by_user:
            for tok in dbs.execute(select(AuthToken).where(AuthToken.purpose == "invite",
                                                           AuthToken.user_id.in_(list(by_user)))
                                   .order_by(AuthToken.id)).scalars():
                tokens[tok.user_id] = tok  # type: ignore[index]  # the newest invite wins
        for u in users:
            out[refs[str(u.fhir_user)]] = _status(u, tokens.get(u.id), now)[0]
    return out


def registration(accounts: Accounts, patient_id: str) -> Registration:
    """Status (with the invite's expiry date), email, last sign-in and the people with shared access."""
    ref = f"Patient/{patient_id}"
    with accounts.core.fhir.sessions() as dbs:
        user = dbs.execute(select(User).where(User.fhir_user == ref)).scalars().first()
        token = None
        if user is not None:
            token = dbs.execute(select(AuthToken).where(AuthToken.purpose == "invite", AuthToken.user_id == user.id)
                                .order_by(AuthToken.id.desc()).limit(1)).scalar()
        status, expires = _status(user, token, accounts.core.clock())
        email = user.email if user is not None else None
    return Registration(status, email, expires, last_sign_in(accounts, patient_id) if user else None,
                        accounts.invitations.shared_users(patient_id))


def last_sign_in(accounts: Accounts, patient_id: str) -> str | None:
    """When the patient last signed in: the newest successful login AuditEvent by the patient."""
    _, page = accounts.core.fhir.search(_LOG, "AuditEvent", [
        ("patient", f"Patient/{patient_id}"), ("subtype", "login"), ("outcome", "0"),
        ("agent", f"Patient/{patient_id}"), ("_sort", "-date"), ("_count", "1")])
    for _t, _i, text in page.matches:
        ev: dict[str, Any] = json.loads(text)
        return str(ev.get("recorded") or "") or None
    return None
