"""The FhirError family: domain errors that the API turns into OperationOutcome responses."""
from __future__ import annotations

from typing import Any


class FhirError(Exception):
    """A FHIR-level failure with its HTTP status and OperationOutcome issue details."""

    status = 400
    code = "invalid"

    def __init__(self, diagnostics: str, *, expression: list[str] | None = None,
                 issues: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression
        self.issues = issues
        self.headers = headers or {}

    def to_operation_outcome(self) -> dict[str, Any]:
        """Render as an R4 OperationOutcome resource."""
        if self.issues:
            return {"resourceType": "OperationOutcome", "issue": self.issues}
        issue: dict[str, Any] = {"severity": "error", "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = self.expression
        return {"resourceType": "OperationOutcome", "issue": [issue]}


class BadRequest(FhirError):
    status, code = 400, "invalid"


class Unauthorized(FhirError):
    status, code = 401, "login"


class Forbidden(FhirError):
    status, code = 403, "forbidden"


class NotFound(FhirError):
    status, code = 404, "not-found"


class MethodNotAllowed(FhirError):
    status, code = 405, "not-supported"


class Conflict(FhirError):
    status, code = 409, "conflict"


class Gone(FhirError):
    status, code = 410, "deleted"


class PreconditionFailed(FhirError):
    status, code = 412, "conflict"


class PayloadTooLarge(FhirError):
    status, code = 413, "too-costly"


class UnsupportedMediaType(FhirError):
    status, code = 415, "not-supported"


class Unprocessable(FhirError):
    status, code = 422, "processing"


def outcome(severity: str, code: str, diagnostics: str, expression: list[str] | None = None) -> dict[str, Any]:
    """Build one OperationOutcome issue (used for informational outcomes too)."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return issue
