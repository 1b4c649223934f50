"""Helpers for the SMART tests: users, patients, proxies, registered apps, a login shortcut, PKCE,
and a driver for the authorize -> consent -> token flow through the Flask test client."""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwk, jwt

from fhir_server.access.context import AccessContext

REDIRECT = "https://app.example.org/callback"
FHIR_BASE = "http://localhost/fhir"
TOKEN_URL = "http://localhost/oauth/token"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
DEFAULT_SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs"


def pkce() -> tuple[str, str]:
    verifier = f"{uuid.uuid4()}-{uuid.uuid4()}"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


class Smart:
    """Test driver bound to one app and test client."""

    def __init__(self, app: Any, client: Any) -> None:
        self.app, self.client = app, client
        self.fhir = app.extensions["fhir_service"]
        self.sys = AccessContext.system("test")

        @app.get("/_test/login/<int:uid>")
        def _login(uid: int) -> str:  # test-only shortcut until a real /login is used
            from smart_auth.accounts.models import User
            from smart_auth.accounts.session import db, login_user
            login_user(db().get(User, uid))
            return "ok"

    # ---- data ----
    def patient(self, family: str = "Doe", given: str = "Jane") -> str:
        r = self.fhir.create(self.sys, "Patient", {"resourceType": "Patient", "name": [{"family": family,
                                                                                          "given": [given]}],
                                                    "birthDate": "1980-01-02"})
        return str(r.stored.id)

    def observation(self, pid: str, category: str = "laboratory", code: str = "2345-7") -> str:
        body = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
                "category": [{"coding": [{"system": OBS_CAT, "code": category}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "effectiveDateTime": "2024-01-01", "valueQuantity": {"value": 5.4, "unit": "mmol/L"}}
        return str(self.fhir.create(self.sys, "Observation", body).stored.id)

    def user(self, pid: str | None, email: str | None = None, role: str = "patient",
             fhir_user: str | None = None) -> Any:
        from smart_auth.accounts.models import PatientAccess, User
        from smart_auth.accounts.passwords import hash_password
        with self.app.extensions["carespace.sessions"]() as s:
            u = User(email=email or f"{uuid.uuid4().hex[:8]}@example.org", name="Test Person",
                     birth_date="1980-01-02", role=role, status="active", password_hash=hash_password("Secret#123"),
                     fhir_user=fhir_user or (f"Patient/{pid}" if pid else None))
            s.add(u)
            s.flush()
            if pid:
                s.add(PatientAccess(user_id=u.id, patient_id=pid, relationship="self", status="active"))
            s.commit()
            return u

    def proxy(self, user: Any, pid: str) -> str:
        """Give `user` proxy access to `pid` (a RelatedPerson); returns the RelatedPerson id."""
        from smart_auth.accounts.models import PatientAccess
        rp = self.fhir.create(self.sys, "RelatedPerson", {"resourceType": "RelatedPerson", "active": True,
                                                          "patient": {"reference": f"Patient/{pid}"}}).stored.id
        with self.app.extensions["carespace.sessions"]() as s:
            s.add(PatientAccess(user_id=user.id, patient_id=pid, relationship="proxy", related_person_id=rp,
                                status="active"))
            s.commit()
        return str(rp)

    def register(self, kind: str = "public", **kw: Any) -> tuple[str, str | None]:
        from smart_auth.oauth.service import register_client
        kw.setdefault("redirect_uris", [REDIRECT])
        with self.app.extensions["carespace.sessions"]() as s:
            new = register_client(s, name=kw.pop("name", "Test App"), kind=kind, **kw)
            s.commit()
            return new.client_id, new.client_secret

    def login(self, user: Any) -> None:
        assert self.client.get(f"/_test/login/{user.id}").status_code == 200

    # ---- flow ----
    def authorize(self, client_id: str, scope: str = DEFAULT_SCOPE, method: str = "GET", **extra: str) -> Any:
        verifier, challenge = pkce()
        self.verifier = verifier
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": scope,
                  "state": secrets.token_urlsafe(8), "aud": FHIR_BASE, "code_challenge": challenge,
                  "code_challenge_method": "S256", **extra}
        params = {k: v for k, v in params.items() if v is not None}
        self.state = params.get("state")
        if method == "POST":
            return self.client.post("/oauth/authorize", data=params)
        return self.client.get("/oauth/authorize?" + urlencode(params))

    def consent_form(self, page: Any) -> dict[str, Any]:
        import re
        html = page.get_data(as_text=True)
        rid = re.search(r'name="rid" value="([^"]+)"', html).group(1)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        types = re.findall(r'name="type" value="([^"]+)"', html)
        form: dict[str, Any] = {"rid": rid, "csrf_token": csrf, "type": types, "decision": "allow"}
        if 'name="offline"' in html:
            form["offline"] = "1"
        radios = re.findall(r'name="patient_id" value="([^"]+)"', html)
        if radios:
            form["patient_id"] = radios[0]
        return form

    def approve(self, page: Any, **changes: Any) -> Any:
        assert page.status_code == 200, page.get_data(as_text=True)[:500]
        form = self.consent_form(page)
        form.update(changes)
        return self.client.post("/oauth/consent", data=form)

    def code(self, client_id: str, scope: str = DEFAULT_SCOPE, **changes: Any) -> str:
        resp = self.authorize(client_id, scope)
        if resp.status_code == 200:
            resp = self.approve(resp, **changes)
        assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
        q = query(resp.headers["Location"])
        assert q.get("state") == self.state and "code" in q, q
        return q["code"]

    def exchange(self, client_id: str, code: str, secret: str | None = None, /, **extra: str) -> Any:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "code_verifier": self.verifier, **extra}
        headers = basic(client_id, secret) if secret else {}
        if not secret and "client_assertion" not in extra:
            data["client_id"] = client_id
        return self.client.post("/oauth/token", data={k: v for k, v in data.items() if v is not None},
                                headers=headers)

    def launch(self, user: Any, scope: str = DEFAULT_SCOPE, kind: str = "public", **changes: Any) -> dict[str, Any]:
        """Register an app, sign `user` in, authorize, consent and exchange; returns the token JSON."""
        client_id, secret = self.register(kind)
        self.login(user)
        resp = self.exchange(client_id, self.code(client_id, scope, **changes), secret)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        body = resp.get_json()
        body["_client_id"], body["_secret"] = client_id, secret
        return body

    def get(self, path: str, token: str | None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        return self.client.get(f"/fhir/{path}", headers=headers, **kw)


# ---- private_key_jwt client assertions (SMART Backend Services, RFC 7523) ----
ATYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def keypair(alg: str) -> tuple[Any, dict[str, Any]]:
    key = jwk.RSAKey.generate_key(2048, private=True) if alg == "RS384" else jwk.ECKey.generate_key("P-384",
                                                                                                    private=True)
    kid = secrets.token_hex(8)
    public = dict(key.as_dict(private=False), kid=kid, alg=alg, key_ops=["verify"])
    key.kid_for_test = kid  # type: ignore[attr-defined]
    return key, {"keys": [public]}


def assertion(client_id: str, key: Any, alg: str, *, exp: int = 240, jti: str | None = None, aud: str = TOKEN_URL,
              iss: str | None = None, header: dict[str, Any] | None = None) -> str:
    now = int(time.time())
    claims = {"iss": iss or client_id, "sub": client_id, "aud": aud, "exp": now + exp,
              "jti": jti or secrets.token_hex(32)}
    return jwt.encode({"alg": alg, "kid": key.kid_for_test, "typ": "JWT", **(header or {})}, claims, key,
                      algorithms=[alg])


def two_patients(smart: "Smart", scope: str = DEFAULT_SCOPE) -> tuple[str, str, str, str, str]:
    """Two patients with an Observation each, and an access token of the first one's app."""
    mine, other = smart.patient("Mine"), smart.patient("Other")
    own_obs, other_obs = smart.observation(mine), smart.observation(other)
    tok = smart.launch(smart.user(mine), scope)
    return mine, other, own_obs, other_obs, tok["access_token"]
