"""The portal's blueprint (templates, static files) and the layout variables every page needs."""
from __future__ import annotations

from typing import Any

from flask import Blueprint

from smart_auth.accounts import session as auth

bp = Blueprint("portal", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/portal")


@bp.app_context_processor
def _layout() -> dict[str, Any]:
    """Variables base.html needs on every page."""
    user = auth.current_user()
    if user is None:
        return {"cs_user": None, "cs_patient": None, "cs_patients": []}
    return {"cs_user": user, "cs_patient": auth.selected_patient(),
            "cs_patients": auth.patients_for(auth.db(), user)}
