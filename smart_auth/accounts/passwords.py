"""Password hashing (argon2id) and the password policy of the user guide."""
from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY = _hasher.hash("not-a-password-used-for-timing")

RULES = [
    (lambda p: len(p) >= 8, "at least 8 characters"),
    (lambda p: re.search(r"[A-Z]", p) is not None, "an uppercase letter"),
    (lambda p: re.search(r"[a-z]", p) is not None, "a lowercase letter"),
    (lambda p: re.search(r"[0-9]", p) is not None, "a number"),
    (lambda p: re.search(r"[^A-Za-z0-9]", p) is not None, "a special character"),
]


def policy_failures(password: str) -> list[str]:
    """The rules a password breaks, worded for the registration form ("needs ...")."""
    return [text for check, text in RULES if not check(password)]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Constant-work check: an account without a password still costs one argon2 verification."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False
