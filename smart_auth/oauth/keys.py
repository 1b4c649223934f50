"""Signing keys: the server's RS256 key (made once into the instance folder, mode 0600) and the
public keys of asymmetric clients (inline JWKS or a registered jwks_uri: a short deadline, cached per
Cache-Control, failures remembered, one fetch per URI at a time)."""
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
MAX_JWKS_BYTES = 64 * 1024
DEFAULT_CACHE_S = 300  # a jwks_uri answering without Cache-Control
REFETCH_AFTER_S = 10  # an unknown kid refetches keys at most this often


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


class KeyFetchError(Exception):
    """A client's jwks_uri could not be read (or failed a moment ago and is not tried again yet)."""


class ClientKeys:
    """Public keys of private_key_jwt clients, fetched from a registered jwks_uri without stalling the server.

    Per process, as public keys need no sharing: a fetch has a short overall deadline and reads at most
    MAX_JWKS_BYTES; at most one fetch per URI runs at a time (others wait for its result, never longer than the
    deadline); keys are kept as long as their Cache-Control allows (DEFAULT_CACHE_S without one, never with
    no-store); a failure is remembered for `failure_ttl` seconds, during which assertions fail at once.
    """

    def __init__(self, timeout: float = 2.0, failure_ttl: float = 60.0) -> None:
        self.timeout, self.failure_ttl = timeout, failure_ttl
        self._cache: dict[str, tuple[float, float, dict[str, Any]]] = {}  # uri -> (until, fetched at, keys)
        self._failed: dict[str, tuple[float, str]] = {}
        self._inflight: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def key_set(self, jwks_json: str | None, jwks_uri: str | None, fresh: bool = False) -> dict[str, Any]:
        """The client's JWK Set: inline, or from its jwks_uri (KeyFetchError when that cannot be read); `fresh`
        (no key matched: the client may have rotated) refetches keys older than REFETCH_AFTER_S."""
        if jwks_json:
            return json.loads(jwks_json)  # type: ignore[no-any-return]
        if not jwks_uri:
            return {"keys": []}
        deadline = time.monotonic() + self.timeout
        while True:
            with self._lock:
                now = time.time()
                hit = self._cache.get(jwks_uri)
                if hit and hit[0] > now and not (fresh and hit[1] < now - REFETCH_AFTER_S):
                    return hit[2]
                failed = self._failed.get(jwks_uri)
                if failed and failed[0] > now:
                    raise KeyFetchError(failed[1])
                waiting = self._inflight.get(jwks_uri)
                if waiting is None:
                    done = self._inflight[jwks_uri] = threading.Event()
                    break
            if not waiting.wait(max(0.0, deadline - time.monotonic())):
                raise KeyFetchError("the client's JWKS is still being fetched")
        try:
            return self._fetch(jwks_uri)
        finally:
            with self._lock:
                self._inflight.pop(jwks_uri, None)
            done.set()

    def _fetch(self, uri: str) -> dict[str, Any]:
        """One GET within the deadline (connect and the whole body), cached or remembered as failed."""
        start = time.monotonic()
        try:
            with requests.get(uri, timeout=self.timeout, stream=True, headers={"Accept": "application/json"}) as resp:
                resp.raise_for_status()
                body = b""
                for chunk in resp.iter_content(8192):
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES or time.monotonic() - start > self.timeout:
                        raise KeyFetchError("the client's JWKS is too large or too slow")
                data = json.loads(body)
                if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
                    raise KeyFetchError("the client's jwks_uri does not serve a JWK Set")
                control = resp.headers.get("Cache-Control", "")
        except (requests.RequestException, ValueError, KeyFetchError) as exc:
            why = str(exc) if isinstance(exc, KeyFetchError) else "the client's jwks_uri could not be read"
            with self._lock:
                self._failed[uri] = (time.time() + self.failure_ttl, why)
            raise KeyFetchError(why) from None
        m = _MAX_AGE.search(control)
        ttl = 0 if "no-store" in control or "no-cache" in control else min(int(m.group(1)), 3600) if m \
            else DEFAULT_CACHE_S
        with self._lock:
            self._failed.pop(uri, None)
            if ttl:
                self._cache[uri] = (time.time() + ttl, time.time(), data)
        return data


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
