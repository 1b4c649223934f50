"""Staff administration pages (administrators only): staff, SMART apps, the practice's audit trail."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import current_app, flash, redirect, request

from smart_auth.accounts import staff as staff_admin
from smart_auth.accounts.errors import AccountError

from ..context import Names, fhir
from ..fhir_data import PortalError
from . import FormError, audit
from .console import accounts, bp, page, staff

NOT_ADMIN = "Only administrators of the practice can manage staff, apps and the audit trail. Ask one of them."
APP_KINDS = {"public": "Public app (PKCE, no secret)", "secret": "Confidential app (client secret)",
             "jwks": "Asymmetric keys (JWKS URL)"}
GRANTS = {"authorization_code": "People sign in to it (SMART launch)",
          "client_credentials": "Backend service (system access, no person)"}


def admin() -> Any:
    s = staff()
    if not staff_admin.is_admin(accounts(), s.user.fhir_user):
        raise PortalError(NOT_ADMIN, 403)
    return s


@bp.context_processor
def _admin_tab() -> dict[str, Any]:
    from smart_auth.accounts import session as auth
    user = auth.current_user()
    return {"cs_admin": bool(user and auth.is_staff(user) and staff_admin.is_admin(accounts(), user.fhir_user))}


def _staff_page(status: int = 200, **extra: Any) -> Any:
    admin()
    return page("admin_staff", status, tab="admin", rows=staff_admin.staff_list(accounts()),
                form=extra.pop("form", {}), errors=extra.pop("errors", {}), **extra)


@bp.get("/admin")
def admin_staff() -> Any:
    return _staff_page()


@bp.post("/admin/staff")
def admin_invite() -> Any:
    s = admin()
    f = request.form
    try:
        r = staff_admin.invite(accounts(), f.get("email", ""), f.get("name", ""), f.get("admin") == "1", s.author)
    except AccountError as err:
        return _staff_page(422, form=f, errors={"email": err.message})
    flash(f"{'A new staff invite was sent' if r.resent else 'The staff invite was sent'} to {r.email}; "
          "the link is valid for 4 days.", "success")
    return redirect("/practice/admin")


@bp.post("/admin/staff/<int:user_id>/disable")
def admin_disable(user_id: int) -> Any:
    s = admin()
    try:
        email = staff_admin.disable(accounts(), user_id, s.user.id, s.author)
    except AccountError as err:
        return _staff_page(422, disable_error=err.message)
    flash(f"{email} can no longer sign in; their sessions and app tokens ended now.", "success")
    return redirect("/practice/admin")


@bp.route("/admin/apps", methods=["GET", "POST"])
def admin_apps() -> Any:
    admin()
    if request.method == "GET":
        return page("admin_apps", tab="admin", form={"kind": "public", "grant": "authorization_code"}, errors={},
                    kinds=APP_KINDS, grants=GRANTS, new=None)
    from smart_auth.accounts import session as auth
    from smart_auth.oauth.service import OAuthDomainError, register_client
    f = request.form
    kind = f.get("kind", "public") if f.get("kind") in APP_KINDS else "public"
    grants = ["client_credentials"] if f.get("grant") == "client_credentials" else None
    dbs = auth.db()
    try:
        new = register_client(dbs, name=f.get("name", ""), redirect_uris=f.get("redirect_uris", "").split(),
                              scope=f.get("scope", ""), kind=kind, jwks_uri=(f.get("jwks_uri") or None)
                              if kind == "jwks" else None, grant_types=grants, launch_uri=f.get("launch_uri") or None)
        if kind == "jwks" and not f.get("jwks_uri"):
            raise OAuthDomainError("an app with asymmetric keys needs the URL of its JWKS")
        dbs.commit()
    except OAuthDomainError as err:
        dbs.rollback()
        return page("admin_apps", 422, tab="admin", form=f, errors={"name": f"The app cannot be registered: {err}"},
                    kinds=APP_KINDS, grants=GRANTS, new=None)
    current_app.logger.info("SMART client %s registered from the practice console", new.client_id)
    return page("admin_apps", tab="admin", form={"kind": "public", "grant": "authorization_code"}, errors={},
                kinds=APP_KINDS, grants=GRANTS, new=audit.client_summary(new))


@bp.get("/admin/audit")
def admin_audit() -> Any:
    s = admin()
    a = request.args
    filters = {k: a.get(k, "") for k in ("person", "patient", "action", "from", "to")}
    people = audit.staff_options(staff_admin.staff_list(accounts()))
    try:
        rows, nxt, note = audit.trail(fhir(), s.ctx, Names(), filters, a.get("cursor") or None)  # type: ignore[arg-type]
    except FormError as err:
        return page("admin_audit", 422, tab="admin", rows=[], filters=filters, errors=err.errors, people=people,
                    actions=audit.ACTIONS, next_url=None, note="")
    nxt_url = "/practice/admin/audit?" + urlencode({**{k: v for k, v in filters.items() if v}, "cursor": nxt}) \
        if nxt else None
    return page("admin_audit", tab="admin", rows=rows, filters=filters, errors={}, people=people,
                actions=audit.ACTIONS, next_url=nxt_url, note=note)
