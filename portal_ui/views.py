"""Portal pages that belong to no tab: the landing redirect, patient switching, Resources, the Access log."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import current_app, redirect, render_template, request

from smart_auth.accounts import session as auth

from . import access_log
from .blueprint import bp
from .context import fhir, name_of, same_site, viewer

DEFAULT_RESOURCES = [
    {"name": "National Cancer Institute", "url": "https://www.cancer.gov",
     "description": "Cancer types, treatment, clinical trials and support from the U.S. National Cancer Institute."},
    {"name": "American Cancer Society", "url": "https://www.cancer.org",
     "description": "Information, programs and a 24/7 helpline for people with cancer and their caregivers."},
    {"name": "CancerCare", "url": "https://www.cancercare.org",
     "description": "Free professional counseling, support groups, education and financial help."},
]


@bp.get("/")
def index() -> Any:
    from smart_auth.accounts.views import landing
    user = auth.current_user()
    return redirect(landing(user) if user is not None else "/login")


@bp.post("/switch-patient")
@auth.login_required
def switch_patient() -> Any:
    auth.select_patient(request.form.get("patient_id", ""))
    return redirect(same_site(request.referrer) or "/health")


@bp.get("/resources")
@auth.login_required
def resources() -> str:
    return render_template("portal/resources.html", active_tab="resources", links=portal_resources())


@bp.get("/access-log")
@auth.login_required
def access_log_page() -> str:
    v = viewer()
    rows, nxt = access_log.entries(fhir(), v.patient_id, name_of, v.ref, request.args.get("cursor") or None)
    return render_template("portal/access_log.html", active_tab=None, rows=rows, next_cursor=nxt,
                           first=not request.args.get("cursor"))


def portal_resources() -> list[dict[str, str]]:
    """The Resources links: app config PORTAL_RESOURCES, else CARESPACE_PORTAL_RESOURCES (JSON), else
    <instance>/portal_resources.json, else the three the user guide names."""
    configured = current_app.config.get("PORTAL_RESOURCES")
    if configured:
        return list(configured)
    raw = current_app.config.get("PORTAL_RESOURCES_JSON")
    path = Path(current_app.instance_path) / "portal_resources.json"
    try:
        if raw:
            return list(json.loads(raw))
        if path.exists():
            return list(json.loads(path.read_text()))
    except (ValueError, OSError):
        current_app.logger.error("PORTAL_RESOURCES is not a JSON list of {name, url, description}")
    return DEFAULT_RESOURCES
