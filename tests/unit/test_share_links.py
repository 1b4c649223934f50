"""Share by link's pieces without a database: direct JWE encryption, the sealed key, form validation."""
from __future__ import annotations

import json
import os

import pytest
from jwcrypto import jwe, jwk

from bundles import crypto
from bundles.share_links import ShareForm, _manifest_request, validate


def test_encrypt_dir_opens_with_jwcrypto_and_fails_with_another_key() -> None:
    key = os.urandom(32)
    compact = crypto.encrypt_dir(b'{"resourceType":"Bundle"}', key)
    assert compact.split(".")[1] == ""  # dir: no encrypted key
    token = jwe.JWE()
    token.deserialize(compact, key=jwk.JWK(kty="oct", k=crypto.b64u(key)))
    assert token.jose_header == {"alg": "dir", "enc": "A256GCM", "cty": "application/fhir+json"}
    assert json.loads(token.payload) == {"resourceType": "Bundle"}
    with pytest.raises(jwe.InvalidJWEData):
        jwe.JWE().deserialize(compact, key=jwk.JWK(kty="oct", k=crypto.b64u(os.urandom(32))))
    with pytest.raises(ValueError):
        crypto.encrypt_dir(b"x", b"short")


def test_a_sealed_key_opens_only_under_its_server_key_and_purpose() -> None:
    server, key = os.urandom(32), os.urandom(32)
    sealed = crypto.seal(server, key, "token-1")
    assert crypto.unseal(server, sealed, "token-1") == key and crypto.b64u(key) not in sealed
    for other_server, purpose in ((os.urandom(32), "token-1"), (server, "token-2")):
        with pytest.raises(crypto.JweError):
            crypto.unseal(other_server, sealed, purpose)


def test_form_validation_names_each_problem() -> None:
    assert validate(ShareForm(passcode="tulip-42")) == {}
    assert validate(ShareForm(no_passcode=True)) == {}
    assert set(validate(ShareForm(label="x" * 81, share="kinds", passcode="a", expires="2", start="x"))) == \
        {"label", "kinds", "passcode", "expires", "start"}
    assert "kinds" in validate(ShareForm(share="kinds", kinds=["Spells"], passcode="tulip-42"))
    assert "kinds" in validate(ShareForm(share="some", passcode="tulip-42"))


@pytest.mark.parametrize("body", [None, [], {}, {"recipient": " "}, {"recipient": "x" * 201},
                                  {"recipient": "x", "passcode": 1}, {"recipient": "x", "embeddedLengthMax": -1},
                                  {"recipient": "x", "embeddedLengthMax": True}])
def test_manifest_requests_the_spec_does_not_allow(body: object) -> None:
    from bundles.share_links import BadManifestRequest
    with pytest.raises(BadManifestRequest):
        _manifest_request(body)


def test_a_manifest_request_as_the_spec_writes_it() -> None:
    assert _manifest_request({"recipient": " Dr. Lee ", "passcode": "p", "embeddedLengthMax": 0}) == ("Dr. Lee", "p", 0)
