"""Password policy, argon2id hashing, link tokens and TOTP codes."""
from __future__ import annotations

import pytest

from smart_auth.accounts import security
from smart_auth.accounts.passwords import hash_password, policy_failures, verify_password


@pytest.mark.parametrize(("password", "rule"), [
    ("Sh0rt!x", "at least 8 characters"),
    ("nouppercase1!", "an uppercase letter"),
    ("NOLOWERCASE1!", "a lowercase letter"),
    ("NoNumbers!!", "a number"),
    ("NoSpecial123", "a special character"),
])
def test_each_rule_is_named(password: str, rule: str) -> None:
    assert policy_failures(password) == [rule]


def test_good_password_and_all_failures() -> None:
    assert policy_failures("Str0ng!pass") == []
    assert policy_failures("") == ["at least 8 characters", "an uppercase letter", "a lowercase letter", "a number",
                                   "a special character"]


def test_argon2id_hash_and_verify() -> None:
    h = hash_password("Str0ng!pass")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "Str0ng!pass")
    assert not verify_password(h, "Str0ng!pasS")
    assert not verify_password(None, "anything")
    assert not verify_password("not-a-hash", "x")


def test_link_tokens_are_random_and_stored_hashed() -> None:
    t1, h1 = security.new_link_token()
    t2, h2 = security.new_link_token()
    assert t1 != t2 and len(t1) >= 40
    assert h1 == security.hash_token(t1) and t1 not in h1 and len(h1) == 64


def test_totp_rfc6238_vector_and_window() -> None:
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of "12345678901234567890"
    assert security.totp_code(secret, 59) == "287082"
    assert security.totp_code(secret, 1111111109) == "081804"
    assert security.verify_totp(secret, "287 082", 59 + 30)  # one step of drift is accepted
    assert not security.verify_totp(secret, "287082", 59 + 120)
    assert not security.verify_totp(secret, "12345", 59)
    uri = security.totp_uri(secret, "a@b.org")
    assert uri.startswith("otpauth://totp/CareSpace%3Aa%40b.org?") and f"secret={secret}" in uri
