"""Signing keys: the server's RS256 key (made once into the instance folder, mode 0600) and the
public keys of asymmetric clients (inline JWKS or a registered jwks_uri, cached per Cache-Control)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import requests
from joserfc import jwk, jwt

KEY_FILE = "oauth_signing_key.pem"
_MAX_AGE = re.compile(r"max-age=(\d+)")


class ServerKey:
    """The RS256 key that signs id_tokens; its public half is the JWKS."""

    def __init__(self, instance_dir: str | Path) -> None:
        path = Path(instance_dir) / KEY_FILE
        if not path.exists():
            key = jwk.RSAKey.generate_key(2048, private=True)
            pem = key.as_pem(private=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
            except FileExistsError:
                pass  # another process made it first: use theirs
        self.key = jwk.RSAKey.import_key(path.read_bytes())
        public = self.key.as_dict(private=False)
        self.kid = hashlib.sha256(json.dumps({k: public[k] for k in ("e", "kty", "n")}, sort_keys=True)
                                  .encode()).hexdigest()[:16]

    def jwks(self) -> dict[str, Any]:
        public = dict(self.key.as_dict(private=False), kid=self.kid, use="sig", alg="RS256")
        return {"keys": [public]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode({"alg": "RS256", "kid": self.kid, "typ": "JWT"}, claims, self.key, algorithms=["RS256"])


class ClientKeys:
    """Public keys of private_key_jwt clients; remote JWKS are cached no longer than they allow."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def key_set(self, jwks_json: str | None, jwks_uri: str | None) -> dict[str, Any]:
        if jwks_json:
            return json.loads(jwks_json)  # type: ignore[no-any-return]
        if not jwks_uri:
            return {"keys": []}
        now = time.time()
        with self._lock:
            hit = self._cache.get(jwks_uri)
        if hit and hit[0] > now:
            return hit[1]
        resp = requests.get(jwks_uri, timeout=10, headers={"Accept": "application/json"})
        resp.raise_for_status()
        data = resp.json()
        m = _MAX_AGE.search(resp.headers.get("Cache-Control", ""))
        if m and "no-store" not in resp.headers.get("Cache-Control", ""):
            with self._lock:
                self._cache[jwks_uri] = (now + min(int(m.group(1)), 3600), data)
        return data  # type: ignore[no-any-return]


def find_key(key_set: dict[str, Any], kid: str | None, alg: str) -> jwk.Key | None:
    """The one key matching `kid` whose type suits `alg` (RS384 -> RSA, ES384 -> EC P-384)."""
    kty = "RSA" if alg.startswith("RS") else "EC"
    matches = [k for k in key_set.get("keys", []) if k.get("kty") == kty and (kid is None or k.get("kid") == kid)]
    if kid is None and len(matches) != 1:
        return None
    if not matches:
        return None
    ops = matches[0].get("key_ops")
    data = {k: v for k, v in matches[0].items() if k not in ("key_ops", "ext")}
    if ops and "verify" not in ops:
        return None
    return jwk.import_key(data)
