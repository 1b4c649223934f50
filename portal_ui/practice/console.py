"""The console's blueprint and per-request context: only staff pass, each acting through their own access."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, flash, redirect, render_template, request

from fhir_server import MAX_MESSAGE_CHARS, MAX_SUBJECT_CHARS, PATIENT_CATEGORIES, AccessContext
from smart_auth.accounts import session as auth
from smart_auth.accounts.service import Accounts

from ..fhir_data import PortalError

bp = Blueprint("practice", __name__, url_prefix="/practice")
NOT_STAFF = ("The practice console is for the practice's staff. Your record is under Health and Messages; "
             "if you work at the practice, sign in with your staff account.")
LIMITS: dict[str, Any] = {"message_max": MAX_MESSAGE_CHARS, "subject_max": MAX_SUBJECT_CHARS, "categories": PATIENT_CATEGORIES}


@dataclass(frozen=True)
class Staff:
    user: Any
    ctx: AccessContext

    @property
    def author(self) -> tuple[str | None, str]:
        return self.user.fhir_user, str(self.user.name)


def staff() -> Staff:
    user = auth.current_user()
    if user is None or not auth.is_staff(user):
        raise PortalError(NOT_STAFF, 403)
    return Staff(user, auth.staff_access(user))


@bp.before_request
def _staff_only() -> Any:
    user = auth.current_user()
    if user is None:
        return redirect("/login?" + urlencode({"next": request.full_path.rstrip("?")}))
    if not auth.is_staff(user):
        raise PortalError(NOT_STAFF, 403)
    if current_app.config.get("STAFF_REQUIRE_2FA") and not user.totp_secret:
        flash("The practice requires two-step verification for staff. Turn it on here to open the practice console.",
              "error")
        return redirect("/account")
    return None


def page(template: str, http_status: int = 200, **ctx: Any) -> tuple[str, int]:
    return render_template(f"practice/{template}.html", active_tab=ctx.pop("tab", None), **ctx), http_status


def accounts() -> Accounts:
    """The account services the composition root installed."""
    return current_app.extensions["accounts"]  # type: ignore[no-any-return]
