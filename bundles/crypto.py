"""JWE compact serialization (PBES2-HS512+A256KW or dir, with A256GCM): formats any JOSE library opens.

Built on the `cryptography` package only (RFC 7516 / RFC 7518 section 4.8): the password never leaves
this module and nothing here keeps it.
"""
from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

ALG = "PBES2-HS512+A256KW"
ENC = "A256GCM"
CTY = "application/fhir+json"
P2C = 210_000  # OWASP 2023 minimum for PBKDF2-HMAC-SHA512
MIN_P2C = 1000  # RFC 7518 floor for records made elsewhere
MAX_P2C = 10_000_000  # refuse headers that would make decryption a denial of service
SALT_BYTES = 16


class JweError(ValueError):
    """The text is not a JWE this module can open (malformed, unsupported, damaged)."""


class WrongPassword(JweError):
    """The password does not open the record (or the record was altered)."""


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise JweError("The record is damaged (bad base64url)") from exc


def _kek(password: str, salt_input: bytes, iterations: int) -> bytes:
    """The key-encryption key: PBKDF2-HMAC-SHA512 over (alg || 0x00 || p2s), 32 bytes for A256KW."""
    salt = ALG.encode("ascii") + b"\x00" + salt_input
    kdf = PBKDF2HMAC(algorithm=hashes.SHA512(), length=32, salt=salt, iterations=iterations)
    return kdf.derive(password.encode("utf-8"))


def encrypt(plaintext: bytes, password: str, *, iterations: int = P2C, cty: str = CTY) -> str:
    """Encrypt `plaintext` under `password`; returns the five-part JWE compact string."""
    if iterations < P2C:
        raise ValueError(f"p2c must be at least {P2C}")
    if not password:
        raise ValueError("a password is required")
    p2s = os.urandom(SALT_BYTES)
    header = {"alg": ALG, "enc": ENC, "cty": cty, "p2s": b64u(p2s), "p2c": iterations}
    protected = b64u(json.dumps(header, separators=(",", ":")).encode("utf-8"))
    cek = os.urandom(32)
    encrypted_key = aes_key_wrap(_kek(password, p2s, iterations), cek)
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    ciphertext, tag = sealed[:-16], sealed[-16:]
    return ".".join([protected, b64u(encrypted_key), b64u(iv), b64u(ciphertext), b64u(tag)])


def header_of(jwe: str) -> dict[str, Any]:
    """The protected header of a compact JWE (checked for the algorithms this module supports)."""
    parts = jwe.strip().split(".")
    if len(parts) != 5:
        raise JweError("This is not a JWE compact serialization (five dot-separated parts expected)")
    try:
        header = json.loads(unb64u(parts[0]))
    except ValueError as exc:
        raise JweError("The record is damaged (bad protected header)") from exc
    if not isinstance(header, dict):
        raise JweError("The record is damaged (bad protected header)")
    if header.get("alg") != ALG or header.get("enc") != ENC:
        raise JweError(f"Unsupported JWE algorithms {header.get('alg')}/{header.get('enc')}; expected {ALG}/{ENC}")
    if header.get("zip") is not None or header.get("crit") is not None:
        raise JweError("Unsupported JWE header parameters (zip/crit)")
    p2c = header.get("p2c")
    if not isinstance(p2c, int) or isinstance(p2c, bool) or not MIN_P2C <= p2c <= MAX_P2C:
        raise JweError(f"Unsupported iteration count p2c={p2c!r}")
    if not isinstance(header.get("p2s"), str) or len(unb64u(header["p2s"])) < 8:
        raise JweError("The record is damaged (missing salt)")
    return header


def decrypt(jwe: str, password: str) -> bytes:
    """The plaintext of a compact JWE; WrongPassword when the password does not open it."""
    header = header_of(jwe)
    protected, ek, iv, ct, tag = jwe.strip().split(".")
    kek = _kek(password, unb64u(header["p2s"]), int(header["p2c"]))
    try:
        cek = aes_key_unwrap(kek, unb64u(ek))
    except InvalidUnwrap as exc:
        raise WrongPassword("The password is not correct") from exc
    if len(cek) != 32:
        raise JweError("The record is damaged (bad content key)")
    try:
        return AESGCM(cek).decrypt(unb64u(iv), unb64u(ct) + unb64u(tag), protected.encode("ascii"))
    except (InvalidTag, ValueError) as exc:
        raise WrongPassword("The password is not correct, or the record was altered") from exc


# ---- SMART Health Links: direct encryption under the link's key, and the server key for long-term links ----
DIR_ALG = "dir"


def encrypt_dir(plaintext: bytes, key: bytes, *, cty: str = CTY) -> str:
    """A compact JWE with alg `dir` and enc A256GCM under the 32-byte `key` (SMART Health Links, "Encrypting")."""
    if len(key) != 32:
        raise ValueError("an A256GCM key is 32 bytes")
    protected = b64u(json.dumps({"alg": DIR_ALG, "enc": ENC, "cty": cty}, separators=(",", ":")).encode("utf-8"))
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext, protected.encode("ascii"))
    return ".".join([protected, "", b64u(iv), b64u(sealed[:-16]), b64u(sealed[-16:])])


def seal(server_key: bytes, data: bytes, purpose: str) -> str:
    """`data` encrypted and bound to `purpose` under the server's own key (kept in the instance folder)."""
    iv = os.urandom(12)
    return b64u(iv + AESGCM(server_key).encrypt(iv, data, purpose.encode("utf-8")))


def unseal(server_key: bytes, text: str, purpose: str) -> bytes:
    """The data seal() sealed; JweError when it was sealed under another key or purpose, or altered."""
    raw = unb64u(text)
    try:
        return AESGCM(server_key).decrypt(raw[:12], raw[12:], purpose.encode("utf-8"))
    except (InvalidTag, ValueError) as exc:
        raise JweError("The sealed key does not open under this server's key") from exc
