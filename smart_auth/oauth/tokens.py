"""Issuing tokens: the stored row, the SMART extras of the token response (patient, encounter,
need_patient_banner, smart_style_url, id_token) and the AuditEvent of every token decision."""
from __future__ import annotations

from typing import Any

from flask import Flask

from fhir_server import audit_event
from smart_auth.accounts.models import User
from smart_auth.accounts.session import after_unit, db, write_phase

from . import repository as repo
from .discovery import endpoints
from .keys import ServerKey
from .models import OAuthToken
from .scopes import split
from .server import OFFLINE_TTL_S, ONLINE_TTL_S

ID_TOKEN_TTL_S = 3600


def make_audit(app: Flask) -> Any:
    """audit(event, client_id, patient_id, detail, ok): one security AuditEvent per token decision."""

    def audit(event: str, client_id: str | None, patient_id: str | None, detail: str, ok: bool,
              agent_ref: str | None = None) -> None:
        record = audit_event(
            action=event, subtype=event, agent_ref=agent_ref, agent_display=agent_ref or f"app {client_id}",
            patient_id=patient_id, entities=[], ok=ok, kind="security", client_id=client_id, detail=detail)
        after_unit(lambda: app.extensions["audit_log"].record(record))

    return audit


def make_save(app: Flask, key: ServerKey) -> Any:
    """Authlib's save_token: store the token row and add the SMART fields to the response."""
    audit = make_audit(app)

    def save(token: dict[str, Any], request: Any) -> None:
        cfg = app.config
        grant_type = request.payload.grant_type
        client = request.client
        now = repo.now()
        scopes = split(token.get("scope"))
        src: dict[str, Any] = {"user_id": None, "patient_id": None, "fhir_user": None, "code_id": None,
                               "app_grant_id": None, "ehr_launch": False}
        nonce = None
        refresh_until = now + (OFFLINE_TTL_S if "offline_access" in scopes else ONLINE_TTL_S)
        if grant_type == "authorization_code":
            c = request.authorization_code.row
            src.update(user_id=c.user_id, patient_id=c.patient_id, fhir_user=c.fhir_user, code_id=c.id,
                       app_grant_id=c.app_grant_id, ehr_launch=c.ehr_launch)
            nonce = c.nonce
        elif grant_type == "refresh_token":
            o = request.refresh_token.row
            src.update(user_id=o.user_id, patient_id=o.patient_id, fhir_user=o.fhir_user, code_id=o.code_id,
                       app_grant_id=o.app_grant_id, ehr_launch=o.ehr_launch)
        user = write_phase().get(User, src["user_id"]) if src["user_id"] else None
        encounter = repo.encounter_of(db(), code_id=src["code_id"]) if src["patient_id"] else None
        sub = str(user.id) if user is not None and "openid" in scopes else None
        rt = token.get("refresh_token")
        db().add(OAuthToken(client_id=client.row.client_id, scope=token["scope"],
                            access_hash=repo.digest(token["access_token"]),
                            refresh_hash=repo.digest(rt) if rt else None, issued_at=now,
                            expires_at=now + int(token["expires_in"]), refresh_expires_at=refresh_until if rt else None,
                            aud=cfg["FHIR_BASE_URL"], id_token_sub=sub, **src))
        db().commit()
        if user is not None:
            if src["patient_id"]:
                token["patient"] = src["patient_id"]
            if encounter:
                token["encounter"] = encounter
            token["need_patient_banner"] = True
            token["smart_style_url"] = endpoints(cfg)["style"]
            if sub is not None:
                claims: dict[str, Any] = {"iss": cfg["BASE_URL"], "sub": sub, "aud": client.row.client_id,
                                          "iat": now, "exp": now + ID_TOKEN_TTL_S}
                if src["fhir_user"] and ("fhirUser" in scopes or "profile" in scopes):
                    claims["fhirUser"] = f"{cfg['FHIR_BASE_URL']}/{src['fhir_user']}"
                if "profile" in scopes:
                    claims["name"] = user.name
                if nonce:
                    claims["nonce"] = nonce
                token["id_token"] = key.sign(claims)
        event = "token-refreshed" if grant_type == "refresh_token" else "token-issued"
        audit(event, client.row.client_id, src["patient_id"], f"{grant_type}: {token['scope']}", True,
              src["fhir_user"])

    return save
