"""The Send Record JWE opens with an independent JOSE library (jwcrypto) and follows RFC 7516/7518 exactly."""
from __future__ import annotations

import base64
import json

import pytest
from jwcrypto import jwa, jwe, jwk

from bundles import crypto

PASSWORD = "Correct-Horse-9!"


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(autouse=True)
def _allow_strong_p2c(monkeypatch: pytest.MonkeyPatch) -> None:
    # jwcrypto refuses p2c above 16384 by default (a DoS guard); our records use 210,000 on purpose.
    monkeypatch.setattr(jwa, "default_max_pbkdf2_iterations", 1_000_000)


def test_header_is_pbes2_with_random_salt_and_enough_iterations() -> None:
    a, b = crypto.encrypt(b"{}", PASSWORD), crypto.encrypt(b"{}", PASSWORD)
    assert len(a.split(".")) == 5
    ha, hb = json.loads(_b64(a.split(".")[0])), json.loads(_b64(b.split(".")[0]))
    assert ha["alg"] == "PBES2-HS512+A256KW" and ha["enc"] == "A256GCM" and ha["cty"] == "application/fhir+json"
    assert ha["p2c"] >= 210_000 and len(_b64(ha["p2s"])) >= 16
    assert ha["p2s"] != hb["p2s"] and a.split(".")[2] != b.split(".")[2]  # fresh salt and IV every time
    assert len(_b64(a.split(".")[2])) == 12 and len(_b64(a.split(".")[4])) == 16


def test_jwcrypto_decrypts_ours_and_we_decrypt_jwcrypto() -> None:
    body = json.dumps({"resourceType": "Bundle", "type": "collection", "note": "é✓"}).encode()
    token = jwe.JWE()
    token.deserialize(crypto.encrypt(body, PASSWORD), key=jwk.JWK.from_password(PASSWORD))
    assert token.payload == body
    theirs = jwe.JWE(body, json.dumps({"alg": "PBES2-HS512+A256KW", "enc": "A256GCM", "p2c": 210000,
                                        "cty": "application/fhir+json"}))
    theirs.add_recipient(jwk.JWK.from_password(PASSWORD))
    assert crypto.decrypt(theirs.serialize(compact=True), PASSWORD) == body


def test_wrong_password_and_tampering_are_refused() -> None:
    token = crypto.encrypt(b'{"a":1}', PASSWORD)
    with pytest.raises(crypto.WrongPassword):
        crypto.decrypt(token, PASSWORD + "x")
    parts = token.split(".")
    ct = bytearray(_b64(parts[3]))
    ct[0] ^= 1
    parts[3] = crypto.b64u(bytes(ct))
    with pytest.raises(crypto.WrongPassword):
        crypto.decrypt(".".join(parts), PASSWORD)
    with pytest.raises(jwe.InvalidJWEData):
        jwe.JWE().deserialize(token, key=jwk.JWK.from_password("nope"))


def test_unsupported_or_malformed_input() -> None:
    with pytest.raises(crypto.JweError):
        crypto.decrypt("not a jwe", PASSWORD)
    header = crypto.b64u(json.dumps({"alg": "dir", "enc": "A256GCM"}).encode())
    with pytest.raises(crypto.JweError, match="Unsupported"):
        crypto.decrypt(header + ".a.b.c.d", PASSWORD)
    huge = crypto.b64u(json.dumps({"alg": crypto.ALG, "enc": crypto.ENC, "p2c": 10**9, "p2s": "AAAAAAAAAAAAAAAAAAAAAA"}).encode())
    with pytest.raises(crypto.JweError, match="iteration"):
        crypto.decrypt(huge + ".a.b.c.d", PASSWORD)
    with pytest.raises(ValueError):
        crypto.encrypt(b"x", PASSWORD, iterations=1000)


def test_password_rules_named() -> None:
    from bundles.service import SendForm, password_failures, validate
    assert password_failures("short") == ["at least 12 characters", "an uppercase letter", "a number",
                                          "a special character"]
    assert password_failures("Long-enough-pass1") == []
    errors = validate(SendForm("nobody", "2024-02-01", "2024-01-01", "x" * 2001, "weak", "other"))
    assert set(errors) == {"recipient", "end", "notes", "password", "confirm"}
    assert "Password needs at least 12 characters" in errors["password"]
    ok = SendForm("dr@example.org", "2020-01-01", "2024-01-01", "see attached", "Long-enough-pass1", "Long-enough-pass1")
    assert validate(ok) == {}
    leaked = SendForm("dr@example.org", "2020-01-01", "2024-01-01", "pw Long-enough-pass1", "Long-enough-pass1",
                      "Long-enough-pass1")
    assert "must not appear in the notes" in validate(leaked)["password"]
