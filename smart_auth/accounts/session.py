"""Sign-in sessions and "whose record am I acting on": the API the portal and the OAuth server use.

The Flask session holds the user id, the user's session_epoch (bumped on password reset / sign-out
everywhere), the token of its server-side session (`signins.py`: signing out deletes it, so a copied
cookie stops working on every server process) and the selected patient.  Access to a patient is
re-checked against PatientAccess on every request, so revoking a proxy takes effect at once.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import current_app, g, has_request_context, redirect, request, session
from sqlalchemy import select
from sqlalchemy.orm import Session

from fhir_server import AccessContext

from . import security
from .models import PatientAccess, SignIn, User

F = TypeVar("F", bound=Callable[..., Any])
IDLE_TIMEOUT_S = 15 * 60


@dataclass(frozen=True)
class PatientChoice:
    """A patient the signed-in user may act for."""

    patient_id: str
    relationship: str  # self | proxy
    related_person_id: str | None
    name: str


def db() -> Session:
    """A request-scoped SQLAlchemy session (closed at teardown by the composition root): a reader's until
    write_phase() makes it a writer's."""
    if "auth_db" not in g:
        g.auth_db = current_app.extensions["carespace.sessions"]()
        g.auth_db.info["writes"] = False
    return g.auth_db  # type: ignore[no-any-return]


def write_phase() -> Session:
    """The request session, from now on a writer's: call it where a unit that writes begins, before the reads
    its writes depend on (is the code used? the refresh token live? the jti new?). The reading so far ends;
    every later transaction of the session takes the database's write lock up front (BEGIN IMMEDIATE on
    SQLite), so reading first and writing after cannot fail because another writer committed in between.
    Until the request ends the session holds that lock in each transaction: no password hashing, network
    calls or second write unit in between (security AuditEvents wait for the request's end: after_unit)."""
    dbs = db()
    if not dbs.info.get("writes"):
        dbs.commit()  # the reads so far (nothing is pending); loaded objects stay usable (expire_on_commit off)
        dbs.bind = current_app.extensions["carespace.write_sessions"].kw["bind"]
        dbs.info["writes"] = True
    return dbs


def after_unit(record: Callable[[], None]) -> None:
    """Run `record` now, or, when this request's writer session is inside a transaction (it holds the write
    lock), once the request ends: another write unit opened now would wait for this one until it times out."""
    dbs = g.get("auth_db") if has_request_context() else None
    if dbs is not None and dbs.info.get("writes") and dbs.in_transaction():
        g.setdefault("audit_after_unit", []).append(record)
        return
    record()


def login_user(user: User) -> None:
    """Start a fresh session for `user` (new session data and a new server-side session: no fixation)."""
    session.clear()
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    session["sid"] = current_app.extensions["accounts"].signins.start(user.id, lifetime)
    session["uid"] = user.id
    session["epoch"] = user.session_epoch
    session["seen"] = int(time.time())
    session.permanent = True


def logout_user() -> None:
    """End the session on the server too (its row), then forget it in the browser."""
    sid = session.get("sid")
    session.clear()
    g.pop("cs_user", None)
    if isinstance(sid, str):
        current_app.extensions["accounts"].signins.end(sid)


def current_user() -> User | None:
    """The signed-in user, or None when absent, idle too long, disabled, signed out (here or from a copy of this
    cookie) or signed out everywhere."""
    if "cs_user" in g:
        return g.cs_user  # type: ignore[no-any-return]
    user = None
    uid = session.get("uid")
    now = int(time.time())
    sid = session.get("sid")
    if uid is not None and isinstance(sid, str) and \
            now - int(session.get("seen", 0)) <= current_app.config.get("IDLE_TIMEOUT_S", IDLE_TIMEOUT_S):
        candidate = db().execute(select(User).join(SignIn, SignIn.user_id == User.id).where(
            SignIn.token_hash == security.hash_token(sid), SignIn.expires_at > now, User.id == uid)).scalar_one_or_none()
        if candidate is not None and candidate.status == "active" and candidate.session_epoch == session.get("epoch"):
            user = candidate
            session["seen"] = now
    if user is None and uid is not None:
        session.clear()
    g.cs_user = user
    return user


def login_required(view: F) -> F:
    """Send anonymous visitors to the login page, returning them to this page afterwards."""
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return redirect("/login?" + urlencode({"next": request.full_path.rstrip("?")}))
        return view(*args, **kwargs)
    return wrapped  # type: ignore[return-value]


def patients_for(dbs: Session, user: User) -> list[PatientChoice]:
    """Patients the user may act for right now (active access only), own record first.

    Worked out once per request (the menu, the banner and the view all ask); every change of access
    is a POST that redirects, so the next request reads it again.
    """
    cache: dict[int, list[PatientChoice]] = g.setdefault("cs_choices", {})
    if user.id not in cache:
        cache[user.id] = _patients_for(dbs, user)
    return list(cache[user.id])


def _patients_for(dbs: Session, user: User) -> list[PatientChoice]:
    rows = dbs.execute(select(PatientAccess).where(PatientAccess.user_id == user.id,
                                                   PatientAccess.status == "active")).scalars().all()
    names = current_app.extensions.get("patient_name_lookup")
    out = [PatientChoice(r.patient_id, r.relationship, r.related_person_id,
                         names(r.patient_id) if names else r.patient_id) for r in rows]
    return sorted(out, key=lambda c: (c.relationship != "self", c.name))


def selected_patient() -> PatientChoice | None:
    """The patient whose record is being shown; defaults to the user's own, else the first allowed."""
    user = current_user()
    if user is None:
        return None
    choices = patients_for(db(), user)
    wanted = session.get("patient")
    for c in choices:
        if c.patient_id == wanted:
            return c
    return choices[0] if choices else None


def select_patient(patient_id: str) -> bool:
    user = current_user()
    if user is None or all(c.patient_id != patient_id for c in patients_for(db(), user)):
        return False
    session["patient"] = patient_id
    return True


def fhir_user_ref(user: User, choice: PatientChoice | None) -> str | None:
    """The FHIR reference that is this person in the context of `choice` (RelatedPerson for proxies)."""
    if choice is not None and choice.relationship == "proxy" and choice.related_person_id:
        return f"RelatedPerson/{choice.related_person_id}"
    return user.fhir_user


def portal_access(user: User, choice: PatientChoice) -> AccessContext:
    """What the portal may do for this user on this patient's record: the whole compartment."""
    return AccessContext.from_scopes(
        ["patient/*.cruds"], patient_id=choice.patient_id, user=fhir_user_ref(user, choice),
        client_id=None)


def is_staff(user: User | None) -> bool:
    return user is not None and user.role == "staff" and (user.fhir_user or "").startswith("Practitioner/")


def staff_access(user: User) -> AccessContext:
    """What a practice staff member may do, decided on each request: every patient's record (user/
    scopes, unconfined), acting as their Practitioner, named in every AuditEvent."""
    ctx = AccessContext.from_scopes(["user/*.cruds"], user=user.fhir_user, client_id=None)
    return replace(ctx, label=user.name)


def has_active_access(dbs: Session, user_id: int, patient_id: str) -> bool:
    """Checked on every token use too: a revoked proxy's app tokens stop working at once."""
    return dbs.execute(select(PatientAccess.id).where(
        PatientAccess.user_id == user_id, PatientAccess.patient_id == patient_id,
        PatientAccess.status == "active")).first() is not None
