"""Documents: a Binary the practice posts as a patient's document is filed under that patient.

Binary is outside R4's patient compartment, so fhir_server.access.guard releases one to a patient's callers
only through its securityContext. When an unconfined writer (the practice, its EHR, the command line)
stores a DocumentReference about a patient whose attachment is a Binary of this server without a
securityContext, the Binary gets that patient as its securityContext, in the same transaction (also
when the Binary comes later in the same transaction). A pointer written by a patient's app releases
nothing: its writes are confined to the patient's own record and never stamp a Binary.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..access.context import AccessContext
from ..storage.indexing import split_reference
from .registry import rule

if TYPE_CHECKING:
    from ..storage.repository import Repository

_PENDING = "fhir_pending_binary_context"  # Binary id -> patient, for Binaries later in the same unit


def _unconfined(ctx: AccessContext, rtype: str) -> bool:
    return ctx.trusted or ctx.confinement(ctx.grants_for(rtype, "c") + ctx.grants_for(rtype, "u")) is None


def _local_id(repo: "Repository", ref: Any, rtype: str) -> str | None:
    ttype, tid, _ = split_reference(ref, repo.extractor.base_url) if isinstance(ref, str) else (None, None, None)
    return tid if ttype == rtype else None


@rule("DocumentReference")
def file_binaries_under_subject(repo: "Repository", resource: dict[str, Any], ctx: AccessContext) -> None:
    """The practice's document about a patient makes its Binary that patient's."""
    if not _unconfined(ctx, "DocumentReference"):
        return
    patient = _local_id(repo, (resource.get("subject") or {}).get("reference"), "Patient")
    if patient is None:
        return
    for content in resource.get("content") or []:
        bid = _local_id(repo, ((content or {}).get("attachment") or {}).get("url"), "Binary")
        if bid is None:
            continue
        current = repo.current("Binary", bid)
        if current is None or current.deleted or current.text is None:
            repo.unit_state(_PENDING)[bid] = patient
            continue
        binary = json.loads(current.text)
        if not binary.get("securityContext"):
            binary["securityContext"] = {"reference": f"Patient/{patient}"}
            repo.write(binary, current, "PUT")


@rule("Binary")
def take_pending_context(repo: "Repository", resource: dict[str, Any], ctx: AccessContext) -> None:
    """A Binary named earlier in the same transaction by the practice's document gets its patient."""
    patient = repo.unit_state(_PENDING).pop(str(resource.get("id")), None)
    if patient and not resource.get("securityContext") and _unconfined(ctx, "Binary"):
        resource["securityContext"] = {"reference": f"Patient/{patient}"}


def file_existing_binaries(repo: "Repository", documents: list[dict[str, Any]]) -> int:
    """Give each unfiled Binary the patient of the documents that point at it, when they all agree.

    For databases written before Binaries were filed: a pointer there may have been written by any
    caller, so a Binary whose documents name different patients is left unfiled (no patient's
    callers see it until the practice files it). Returns how many Binaries were filed.
    """
    subjects: dict[str, set[str | None]] = {}
    for doc in documents:
        patient = _local_id(repo, (doc.get("subject") or {}).get("reference"), "Patient")
        for content in doc.get("content") or []:
            bid = _local_id(repo, ((content or {}).get("attachment") or {}).get("url"), "Binary")
            if bid is not None:
                subjects.setdefault(bid, set()).add(patient)
    filed = 0
    for bid, patients in sorted(subjects.items()):
        current = repo.current("Binary", bid)
        if len(patients) != 1 or None in patients or current is None or current.deleted or current.text is None:
            continue
        binary = json.loads(current.text)
        if not binary.get("securityContext"):
            binary["securityContext"] = {"reference": f"Patient/{next(iter(patients))}"}
            repo.write(binary, current, "PUT")
            filed += 1
    return filed
