"""The FhirError family: domain errors that the API turns into OperationOutcome responses.

Every failure of the FHIR layer is one of these, raised by the service and rendered by fhir_server.rest
with its status; nothing outside this tree changes a status.

    FhirError
     +-- BadRequest            400  malformed input: a bad search value, id, Bundle or paging cursor
     +-- Unauthorized          401  no usable access token (raised by the access resolver)
     +-- Forbidden             403  the granted scopes, or the patient-context write rules, refuse it
     +-- NotFound              404  unknown type or id, or a resource the caller may not know exists
     +-- MethodNotAllowed      405  the interaction does not exist on that path or type (AuditEvents are append-only)
     +-- Conflict              409  a delete of a resource others still reference
     +-- Gone                  410  a deleted resource (to a caller who could see it)
     +-- PreconditionFailed    412  If-Match or a conditional operation that matched too many
     +-- PayloadTooLarge       413  a request body over the limit
     +-- UnsupportedMediaType  415  a body that is not FHIR JSON
     +-- Unprocessable         422  an invalid resource or a business rule that refuses the write
     +-- TooManyRequests       429  a Bulk Data status URL polled faster than the server allows (Retry-After)
     +-- InternalError         500  a fault of the server itself; the request changed nothing
"""
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


class TooManyRequests(FhirError):
    status, code = 429, "throttled"


class InternalError(FhirError):
    status, code = 500, "exception"


_BY_STATUS: dict[int, type[FhirError]] = {cls.status: cls for cls in (
    BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict, Gone, PreconditionFailed,
    PayloadTooLarge, UnsupportedMediaType, Unprocessable, TooManyRequests, InternalError)}


def for_status(status: int, diagnostics: str) -> FhirError:
    """The error of the tree for an HTTP status another layer reported (unknown 4xx: 400, 5xx: 500)."""
    cls = _BY_STATUS.get(status) or (InternalError if status >= 500 else BadRequest)
    return cls(diagnostics)


def outcome(severity: str, code: str, diagnostics: str, expression: list[str] | None = None) -> dict[str, Any]:
    """Build one OperationOutcome issue (used for informational outcomes too)."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return issue
