"""Secure-messaging rules on Communication, enforced for every writer (portal, SMART app, EHR, transaction).

Every message is answered at most once (two staff answering at once cannot both win: the answered
message is locked). The patient side (a Patient or RelatedPerson sender) replies only to a message
from the practice, and never to a reply; the practice (any other sender) answers any message from
the patient side, replies included. A message a patient or proxy writes needs a category (Rx or
Health), a subject and a text no longer than MAX_MESSAGE_CHARS. docs/messages.md describes the mapping.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..access.context import AccessContext
from ..errors import Unprocessable
from ..storage.models import ResourceRow
from .registry import rule

if TYPE_CHECKING:
    from ..storage.repository import Repository

CATEGORY_SYSTEM = "urn:carespace:message-category"
PATIENT_CATEGORIES = {"rx": "Rx", "health": "Health"}
MAX_MESSAGE_CHARS = 4000
MAX_SUBJECT_CHARS = 150
_PATIENT_SIDE = ("Patient/", "RelatedPerson/")


def _local_id(ref: Any, rtype: str) -> str | None:
    """The id in a reference such as Communication/12 (absolute URLs of this server too)."""
    text = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(text, str) or f"{rtype}/" not in text:
        return None
    tail = text.rsplit(f"{rtype}/", 1)[1]
    return tail.split("/", 1)[0] or None


def _text(resource: dict[str, Any]) -> str:
    return "".join(p.get("contentString", "") for p in resource.get("payload", []) if isinstance(p, dict))


def _from_patient_side(resource: dict[str, Any]) -> bool:
    sender = (resource.get("sender") or {}).get("reference", "")
    return isinstance(sender, str) and sender.startswith(_PATIENT_SIDE)


def _categories(resource: dict[str, Any]) -> set[str]:
    return {c.get("code", "") for cat in resource.get("category", []) for c in cat.get("coding", [])
            if c.get("system") == CATEGORY_SYSTEM}


def _replies_to(repo: "Repository", target: ResourceRow) -> list[dict[str, Any]]:
    """Live Communications answering `target`, looked up within the patients the target belongs to."""
    rows = repo.texts_beside(target.pk, "Communication", target.fhir_id)
    out = []
    for text in rows:
        res = json.loads(text or "{}")
        if any(_local_id(r, "Communication") == target.fhir_id for r in res.get("inResponseTo", [])):
            out.append(res)
    return out


@rule("Communication")
def reply_once(repo: "Repository", resource: dict[str, Any], ctx: AccessContext) -> None:
    """A message is answered at most once; the patient side never answers a reply or its own side's message."""
    refs = resource.get("inResponseTo") or []
    if not refs:
        return
    if len(refs) > 1:
        raise Unprocessable("A reply answers exactly one message", expression=["Communication.inResponseTo"])
    target_id = _local_id(refs[0], "Communication")
    target = repo.current("Communication", target_id) if target_id else None
    if target is None or target.deleted or target.text is None:
        raise Unprocessable("inResponseTo must reference a message on this server",
                            expression=["Communication.inResponseTo"])
    # Lock the answered message so that two simultaneous replies are serialised (PostgreSQL).
    repo.lock(target.pk)
    answered = json.loads(target.text)
    if _from_patient_side(resource):
        if answered.get("inResponseTo"):
            raise Unprocessable("This message is itself a reply; a reply cannot be answered",
                                expression=["Communication.inResponseTo"])
        if _from_patient_side(answered):
            raise Unprocessable("A patient or a person with shared access can reply only to a message from the "
                                "practice", expression=["Communication.inResponseTo"])
    elif not _from_patient_side(answered):
        raise Unprocessable("The practice answers messages from patients and the people they share access with; "
                            "this message is not one of them", expression=["Communication.inResponseTo"])
    others = [r for r in _replies_to(repo, target) if r.get("id") != resource.get("id")]
    if others:
        raise Unprocessable("This message has already been answered; a message can be answered only once",
                            expression=["Communication.inResponseTo"])


@rule("Communication")
def patient_message_shape(repo: "Repository", resource: dict[str, Any], ctx: AccessContext) -> None:
    """What a patient or proxy sends must say what it is about and stay a readable length."""
    sender = (resource.get("sender") or {}).get("reference", "")
    if not isinstance(sender, str) or not sender.startswith(_PATIENT_SIDE):
        return
    text = _text(resource)
    if not text.strip():
        raise Unprocessable("A message needs some text", expression=["Communication.payload"])
    if len(text) > MAX_MESSAGE_CHARS:
        raise Unprocessable(f"A message can be at most {MAX_MESSAGE_CHARS} characters",
                            expression=["Communication.payload"])
    if resource.get("inResponseTo"):
        return  # a reply inherits its subject and category from the message it answers
    if not _categories(resource) & set(PATIENT_CATEGORIES):
        raise Unprocessable("A new message needs a category: Rx or Health", expression=["Communication.category"])
    subject = ((resource.get("topic") or {}).get("text") or "").strip()
    if not subject:
        raise Unprocessable("A new message needs a subject", expression=["Communication.topic"])
    if len(subject) > MAX_SUBJECT_CHARS:
        raise Unprocessable(f"A subject can be at most {MAX_SUBJECT_CHARS} characters",
                            expression=["Communication.topic"])
