"""Domain errors of the accounts service; the views turn each into a page a person can act on."""
from __future__ import annotations


class AccountError(Exception):
    """A refusal with a message that is safe to show to the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(AccountError):
    """The form or command input is wrong; the message says what to fix."""


class LinkProblem(AccountError):
    """A registration or reset link that cannot be used: expired, used, replaced or unknown."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PolicyError(AccountError):
    """The password breaks rules of the policy; `failures` names each one."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__("Your password needs " + ", ".join(failures) + ".")
        self.failures = failures


class LoginFailed(AccountError):
    """One generic answer: never which field was wrong or whether the account exists."""

    def __init__(self) -> None:
        super().__init__("The email, password or date of birth is not correct. Please check them and try again.")


class Throttled(AccountError):
    """Too many failed attempts for this account or address."""

    def __init__(self, minutes: int, what: str = "sign-in attempts") -> None:
        unit = "minute" if minutes == 1 else "minutes"
        super().__init__(f"Too many {what}. Please try again in {minutes} {unit}.")
        self.minutes = minutes


class NotAllowed(AccountError):
    """The signed-in person may not do this for this patient."""
