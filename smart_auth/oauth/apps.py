""""Connected apps" (the SMART management endpoint): each app the user authorized with its scopes
and last use, "Revoke" that kills its tokens at once, and EHR launch of registered apps."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, flash, redirect, render_template, request

from smart_auth.accounts.session import current_user, db, login_required, selected_patient, write_phase

from . import repository as repo
from .scopes import describe, split
from .service import create_launch, latest_encounter, revoke_app

bp = Blueprint("smart_apps", __name__, template_folder="../templates")


def _when(epoch: int | None) -> str:
    if not epoch:
        return "Not used yet"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


@bp.get("/apps")
@login_required
def apps() -> Any:
    user = current_user()
    assert user is not None
    names = current_app.extensions.get("patient_name_lookup")
    rows = []
    for g in repo.app_grants_for_user(db(), user.id):
        client = repo.client(db(), g.client_id)
        rows.append({"id": g.id, "name": client.name if client else g.client_id,
                     "patient": (names(g.patient_id) if names else g.patient_id) if g.patient_id else None,
                     "scopes": [describe(s) for s in split(g.granted_scope)], "raw_scope": g.granted_scope,
                     "last_used": _when(g.last_used_at), "since": _when(g.created_at)})
    launchable = [c for c in repo.launchable_clients(db()) if "authorization_code" in c.grant_types.split()]
    return render_template("oauth/apps.html", apps=rows, launchable=launchable, patient=selected_patient(),
                           staff=user.role == "staff", active_tab=None)


def _existing_patient(patient_id: str) -> str | None:
    from fhir_server import AccessContext, FhirError
    try:
        current_app.extensions["fhir_service"].read(AccessContext.system("apps"), "Patient", patient_id)
    except FhirError:
        return None
    return patient_id


@bp.post("/apps/<int:grant_id>/revoke")
@login_required
def revoke(grant_id: int) -> Any:
    user = current_user()
    assert user is not None
    grant = revoke_app(write_phase(), user.id, grant_id)
    db().commit()
    if grant is not None:
        client = repo.client(db(), grant.client_id)
        current_app.extensions["smart.hooks"].audit("token-revoked", grant.client_id, grant.patient_id,
                                                    "access revoked on Connected apps", True, user.fhir_user)
        flash(f"{client.name if client else 'The app'} can no longer access the record.", "success")
    return redirect("/apps")


@bp.post("/apps/launch")
@login_required
def launch() -> Any:
    user = current_user()
    choice = selected_patient()
    patient_id = choice.patient_id if choice else None
    if user is not None and user.role == "staff":  # practice staff launch an app for any patient (EHR launch)
        patient_id = _existing_patient(request.form.get("patient_id", "").strip())
    client = repo.client(db(), request.form.get("client_id"))
    if user is None or patient_id is None or client is None or not client.launch_uri:
        flash("That app cannot be launched from here (is the patient ID right?).", "error")
        return redirect("/apps")
    encounter_id = latest_encounter(current_app.extensions["fhir_service"], patient_id)
    handle = create_launch(write_phase(), user.id, client.client_id, patient_id, encounter_id)
    db().commit()
    sep = "&" if "?" in client.launch_uri else "?"
    query = urlencode({"iss": current_app.config["FHIR_BASE_URL"], "launch": handle})
    return redirect(f"{client.launch_uri}{sep}{query}")
