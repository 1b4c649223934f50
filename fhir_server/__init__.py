"""CareSpace's FHIR R4 server: this module is all that other packages import (everything else is internal).

    r4/          the R4 definitions: generated tables and data, validation, dates, display text
    storage/     the tables, the repository (all SQL on FHIR data), index extraction, prebuilt SELECTs
    search/      search parsing, planning, SQL conditions, execution, _include/_revinclude
    access/      AccessContext (who asks, with which scopes) and the guard that enforces it everywhere
    rules/       business rules every write passes, whoever writes (messages, documents)
    operations/  $everything, history, transaction and batch Bundles, Bulk Data $export
    rest/        the /fhir blueprint, HTTP rendering, the read fast path, the CapabilityStatement
    service.py   FhirService: every interaction, for HTTP and in-process callers alike
    audit.py     AuditEvents for every access and security event

docs/architecture.md walks through a read and a search.
"""
from __future__ import annotations

from .access.context import AccessContext, ScopeGrant, parse_scope
from .audit import AuditLog, audit_event
from .committed import Commit, CommitHook, CommittedWrite
from .errors import (
    BadRequest,
    Conflict,
    FhirError,
    Forbidden,
    Gone,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
    for_status,
)
from .operations.everything import EverythingPage, EverythingRequest
from .operations.export import ExportRequest, ExportService, ExportSettings, ExportStatus, parse_kickoff
from .r4.dates import now_instant
from .r4.display import concept_text, human_name
from .r4.validation import validate_resource
from .rest.api import register as register_api
from .rest.capability import capability_statement
from .rest.fastpath import HeaderResolver
from .rest.http import error_response
from .rules.messages import CATEGORY_SYSTEM, MAX_MESSAGE_CHARS, MAX_SUBJECT_CHARS, PATIENT_CATEGORIES
from .service import FhirService
from .storage.hot_select import HotSelect
from .storage.models import Base as FhirBase
from .storage.replica import ReadReplica
from .stored import Stored, UnitOfWork, WriteResult

__all__ = [
    "AccessContext", "AuditLog", "BadRequest", "CATEGORY_SYSTEM", "Commit", "CommitHook", "CommittedWrite", "Conflict", "EverythingPage", "EverythingRequest",
    "ExportRequest", "ExportService", "ExportSettings", "ExportStatus",
    "FhirBase", "FhirError", "FhirService", "Forbidden", "Gone", "HeaderResolver", "HotSelect", "InternalError",
    "MAX_MESSAGE_CHARS", "MAX_SUBJECT_CHARS", "MethodNotAllowed", "NotFound", "PATIENT_CATEGORIES",
    "PayloadTooLarge", "PreconditionFailed", "ReadReplica", "ScopeGrant", "Stored", "TooManyRequests", "Unauthorized",
    "UnsupportedMediaType",
    "Unprocessable", "UnitOfWork", "WriteResult", "audit_event", "capability_statement", "concept_text", "error_response",
    "for_status", "human_name", "now_instant", "parse_kickoff", "parse_scope", "register_api", "validate_resource",
]
