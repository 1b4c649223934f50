"""The authorization endpoint (GET and POST) and the consent page: who the app is, what it asks
for in plain words, whose record (patient picker), limited access and offline-access disclosure."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError
from flask import Blueprint, Response, current_app, redirect, render_template, request, session

from smart_auth.accounts.models import User
from smart_auth.accounts.session import (
    PatientChoice,
    current_user,
    db,
    fhir_user_ref,
    login_required,
    patients_for,
    write_phase,
)

from . import repository as repo
from .models import AppGrant
from .scopes import (
    CATEGORY_CHOICES,
    LABELS,
    Choices,
    apply_choices,
    describe,
    has_patient_scopes,
    offered_ticked,
    remembered_grant,
    resource_types,
    split,
)
from .server import SmartServer, StoredRequest
from .service import OAuthDomainError, launch_context, remember_consent

bp = Blueprint("smart_authorize", __name__, template_folder="../templates")
MAX_PENDING = 5


def _server() -> SmartServer:
    return current_app.extensions["smart.server"]  # type: ignore[no-any-return]


@dataclass
class Offer:
    """What the consent page offers: the allowed scopes and whose record may be shared."""

    requested: list[str]
    choices: list[PatientChoice]
    fixed: PatientChoice | None
    needs_patient: bool
    ehr_launch: bool
    encounter_id: str | None = None


def _error(req: StoredRequest, err: OAuth2Error) -> Any:
    """Redirect errors back to the app when its redirect URI is trusted; otherwise show a page."""
    if getattr(err, "redirect_uri", None):
        if isinstance(err, AccessDeniedError):
            current_app.extensions["smart.hooks"].refused(req.params.get("client_id"), "the user denied access")
        return _server().handle_error_response(req, err)
    return render_template("oauth/error.html", message=err.get_error_description() or err.error), 400


def _offer(user: User, client_id: str, requested: list[str], params: dict[str, str]) -> Offer:
    needs = "launch/patient" in requested or "launch" in requested or has_patient_scopes(requested)
    if params.get("launch"):
        pid, encounter = launch_context(db(), params["launch"], client_id, user.id, staff=user.role == "staff")
        names = current_app.extensions.get("patient_name_lookup")
        choice = PatientChoice(pid, "staff", None, names(pid) if names else pid) if user.role == "staff" else next(
            (c for c in patients_for(db(), user) if c.patient_id == pid), None)
        if choice is None:
            raise OAuthDomainError("You no longer have access to this patient's record")
        wants_encounter = "launch" in requested or "launch/encounter" in requested
        return Offer(requested, [choice], choice, True, True, encounter if wants_encounter else None)
    choices = patients_for(db(), user) if needs else []
    if needs and not choices:
        raise OAuthDomainError("There is no patient record you can share with this app")
    return Offer(requested, choices, choices[0] if len(choices) == 1 else None, needs, False)


def _approve(req: StoredRequest, grant: Any, user: User, offer: Offer, choice: PatientChoice | None,
             granted: list[str], previous: AppGrant | None = None) -> Any:
    """Issue the code; a request the remembered decision answered keeps that (maybe wider) decision as it was."""
    patient_id = choice.patient_id if choice is not None and offer.needs_patient else None
    asked, allowed = (split(previous.requested_scope), split(previous.granted_scope)) if previous is not None \
        else (offer.requested, granted)
    remembered = remember_consent(write_phase(), user.id, req.client.row.client_id, patient_id, asked, allowed)
    db().commit()
    req.decision = {"scope": " ".join(granted), "patient_id": patient_id,
                    "fhir_user": fhir_user_ref(user, choice), "ehr_launch": offer.ehr_launch,
                    "app_grant_id": remembered.id, "encounter_id": offer.encounter_id}
    return _server().create_authorization_response(request=req, grant_user=user, grant=grant)


def _validated(params: dict[str, str]) -> tuple[StoredRequest, Any]:
    req = _server().create_oauth2_request(params)
    assert isinstance(req, StoredRequest)
    return req, _server().get_consent_grant(req)


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    params = {k: v for k, v in request.values.items() if k != "csrf_token"}
    req = StoredRequest(params)
    try:
        req, grant = _validated(params)
    except OAuth2Error as err:
        return _error(req, err)
    user = current_user()
    if user is None:
        return redirect("/login?" + urlencode({"next": "/oauth/authorize?" + urlencode(params)}))
    requested = split(req.scope)
    try:
        offer = _offer(user, req.client.row.client_id, requested, params)
    except OAuthDomainError as exc:
        return _error(req, InvalidRequestError(str(exc), redirect_uri=grant.redirect_uri, state=params.get("state")))
    if offer.fixed is not None and params.get("prompt") != "consent":
        previous = repo.app_grant(db(), user.id, req.client.row.client_id,
                                  offer.fixed.patient_id if offer.needs_patient else None)
        granted = remembered_grant(requested, split(previous.requested_scope), split(previous.granted_scope)) \
            if previous is not None else None
        if previous is not None and granted is not None:
            return _approve(req, grant, user, offer, offer.fixed, granted, previous)
    pending = dict(session.get("oauth_pending") or {})
    rid = secrets.token_urlsafe(12)
    pending[rid] = params
    session["oauth_pending"] = dict(list(pending.items())[-MAX_PENDING:])
    return render_template("oauth/consent.html", **_page(req, offer, rid))


def _page(req: StoredRequest, offer: Offer, rid: str) -> dict[str, Any]:
    """Consent page context, pre-filled from the user's earlier decision for this app: what it granted (a wider
    grant covers a narrower request) and what it never asked are ticked; only what the user declined is not."""
    types = resource_types(offer.requested)
    unfiltered = {t for s in offer.requested if (t := _type_of(s)) and "?" not in s}
    user = current_user()
    earlier = repo.app_grant(db(), user.id, req.client.row.client_id,
                             offer.fixed.patient_id if offer.fixed and offer.needs_patient else None) if user else None
    asked, before = (split(earlier.requested_scope), split(earlier.granted_scope)) if earlier else ([], [])
    return {
        "rid": rid, "app_name": req.client.row.name, "offer": offer,
        "general": [describe(s) for s in offer.requested if _type_of(s) is None and s != "offline_access"],
        "types": [{"type": t, "label": LABELS.get(t, t), "what": "; ".join(
            describe(s) for s in offer.requested if _type_of(s) == t),
            "checked": any(offered_ticked(s, asked, before) for s in offer.requested if _type_of(s) == t),
            "categories": [(v, label, any(b.endswith(f"?category={v}") and _type_of(b) == t for b in before))
                           for v, label in CATEGORY_CHOICES.get(t, [])] if t in unfiltered else []} for t in types],
        "offline": "offline_access" in offer.requested,
        "offline_checked": offered_ticked("offline_access", asked, before), "active_tab": None,
    }


def _type_of(scope: str) -> str | None:
    found = resource_types([scope])
    return found[0] if found else None


@bp.post("/oauth/consent")
@login_required
def consent() -> Any:
    pending = dict(session.get("oauth_pending") or {})
    params = pending.pop(request.form.get("rid", ""), None)
    session["oauth_pending"] = pending
    if not params:
        return render_template("oauth/error.html", message="This sign-in request has expired or was already "
                               "answered. Go back to the app and connect it again."), 400
    req = StoredRequest(params)
    try:
        req, grant = _validated(params)
    except OAuth2Error as err:
        return _error(req, err)
    user = current_user()
    assert user is not None
    if request.form.get("decision") != "allow":
        return _error(req, AccessDeniedError(redirect_uri=grant.redirect_uri, state=params.get("state")))
    requested = split(req.scope)
    try:
        offer = _offer(user, req.client.row.client_id, requested, params)
    except OAuthDomainError as exc:
        return _error(req, InvalidRequestError(str(exc), redirect_uri=grant.redirect_uri, state=params.get("state")))
    choice = offer.fixed or next((c for c in offer.choices if c.patient_id == request.form.get("patient_id")), None)
    if offer.needs_patient and choice is None:
        return render_template("oauth/consent.html", error="Choose whose record the app may see.",
                               **_page(req, offer, _keep(params))), 400
    cats = tuple((t, tuple(v for v, _ in CATEGORY_CHOICES.get(t, []) if v in request.form.getlist(f"cat_{t}")))
                 for t in CATEGORY_CHOICES)
    choices = Choices(types=frozenset(request.form.getlist("type")), categories=cats,
                      offline=bool(request.form.get("offline")))
    return _approve(req, grant, user, offer, choice, apply_choices(requested, choices))


def _keep(params: dict[str, str]) -> str:
    pending = dict(session.get("oauth_pending") or {})
    rid = secrets.token_urlsafe(12)
    pending[rid] = params
    session["oauth_pending"] = pending
    return rid


__all__ = ["bp", "Response"]
