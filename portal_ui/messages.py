"""Secure messaging over Communication (mapping in docs/messages.md), under the viewer's access context."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fhir_server import (
    CATEGORY_SYSTEM,
    MAX_MESSAGE_CHARS,
    MAX_SUBJECT_CHARS,
    PATIENT_CATEGORIES,
    AccessContext,
    Conflict,
    FhirError,
    FhirService,
    PreconditionFailed,
    Unprocessable,
    concept_text,
)

from .fhir_data import PortalError, ref_id, search_all, when_text

PRACTICE_SIDE = ("Practitioner/", "PractitionerRole/", "Organization/")
PATIENT_SIDE = ("Patient/", "RelatedPerson/")


class ComposeError(Exception):
    """Field -> message for a message that cannot be sent as written."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


@dataclass
class Message:
    """One Communication as the portal shows it."""

    id: str
    subject: str
    category: str
    sender: str
    sent: str
    received: str | None
    text: str
    from_practice: bool
    in_response_to: str | None
    reply: "Message | None" = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def unread(self) -> bool:
        return self.from_practice and not self.received

    @property
    def can_reply(self) -> bool:
        """A received message that is not itself a reply and has not been answered yet."""
        return self.from_practice and self.in_response_to is None and self.reply is None

    @property
    def sent_text(self) -> str:
        return when_text(self.sent)


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _sender_ref(c: dict[str, Any]) -> str:
    ref = (c.get("sender") or {}).get("reference")
    return ref if isinstance(ref, str) else ""


def _to_message(c: dict[str, Any], names: Mapping[str, str]) -> Message:
    sender = _sender_ref(c)
    practice = sender.startswith(PRACTICE_SIDE) or (not sender and bool(c.get("recipient")))
    display = (c.get("sender") or {}).get("display") or names.get(sender) or ("Your care team" if practice else "")
    category = ", ".join(concept_text(cat) for cat in c.get("category", []) if concept_text(cat))
    text = "\n".join(p.get("contentString", "") for p in c.get("payload", []) if p.get("contentString"))
    parent = ref_id((c.get("inResponseTo") or [None])[0], "Communication")
    return Message(c.get("id", ""), concept_text(c.get("topic")), category, display, c.get("sent") or "",
                   c.get("received"), text, practice, parent, raw=c)


@dataclass
class Mailbox:
    inbox: list[Message]
    sent: list[Message]
    by_id: dict[str, Message]

    @property
    def unread_count(self) -> int:
        return sum(1 for m in self.inbox if m.unread)


def mailbox(svc: FhirService, ctx: AccessContext, patient_id: str, names: Mapping[str, str] | None = None) -> Mailbox:
    """Every message in the patient's record: from the practice (inbox) and sent by the patient side."""
    comms = search_all(svc, ctx, "Communication", [("_sort", "-sent")], limit=3000)
    by_id = {c["id"]: _to_message(c, names or {}) for c in comms if c.get("status") != "entered-in-error"}
    for m in by_id.values():
        parent = by_id.get(m.in_response_to or "")
        if parent is not None and parent.reply is None:
            parent.reply = m
        if parent is not None and not m.subject:
            m.subject = "Re: " + (parent.subject or "your message")
    ordered = sorted(by_id.values(), key=lambda m: m.sent, reverse=True)
    return Mailbox([m for m in ordered if m.from_practice], [m for m in ordered if not m.from_practice], by_id)


def open_message(svc: FhirService, ctx: AccessContext, patient_id: str, message_id: str,
                 names: Mapping[str, str] | None = None) -> Message:
    """The message and its reply; opening a received message marks it read (Communication.received)."""
    box = mailbox(svc, ctx, patient_id, names)
    msg = box.by_id.get(message_id)
    if msg is None:
        raise PortalError("This message does not exist or is not part of this record.", 404)
    if msg.unread:
        body = dict(msg.raw, received=now())
        body.pop("meta", None)
        try:
            svc.update(ctx, "Communication", msg.id, body, if_match=f'W/"{msg.raw.get("meta", {}).get("versionId")}"')
            msg.received = body["received"]
        except (PreconditionFailed, Conflict):
            pass  # someone else changed it meanwhile (or at the same moment); it will be marked next time
    return msg


def reply(svc: FhirService, ctx: AccessContext, patient_id: str, author: tuple[str | None, str], message_id: str,
          text: str) -> str:
    """Answer a received message once; returns the reply's id.  The server rule refuses a second reply."""
    box = mailbox(svc, ctx, patient_id)
    msg = box.by_id.get(message_id)
    if msg is None:
        raise PortalError("This message does not exist or is not part of this record.", 404)
    if not msg.can_reply:
        raise PortalError("This message has already been answered or is a reply; it cannot be answered again.", 422)
    body = text.strip()
    if not body:
        raise ComposeError({"message": "Write your reply before sending it."})
    if len(body) > MAX_MESSAGE_CHARS:
        raise ComposeError({"message": f"Your reply is {len(body)} characters; the limit is {MAX_MESSAGE_CHARS}."})
    recipient = msg.raw.get("sender")
    resource = _new(patient_id, author, body, msg.raw.get("category"), msg.raw.get("topic"),
                    [recipient] if recipient else [])
    resource["inResponseTo"] = [{"reference": f"Communication/{msg.id}"}]
    return _create(svc, ctx, resource)


def compose(svc: FhirService, ctx: AccessContext, patient_id: str, author: tuple[str | None, str],
            form: Mapping[str, str], practice: dict[str, Any] | None) -> str:
    """Send a new message to the practice; raises ComposeError naming each field that is wrong."""
    category = (form.get("category") or "").strip().lower()
    subject = (form.get("subject") or "").strip()
    text = (form.get("message") or "").strip()
    errors: dict[str, str] = {}
    if category not in PATIENT_CATEGORIES:
        errors["category"] = "Choose a category: Rx or Health."
    if not subject:
        errors["subject"] = "Enter a subject."
    elif len(subject) > MAX_SUBJECT_CHARS:
        errors["subject"] = f"The subject is {len(subject)} characters; the limit is {MAX_SUBJECT_CHARS}."
    if not text:
        errors["message"] = "Write your message."
    elif len(text) > MAX_MESSAGE_CHARS:
        errors["message"] = f"Your message is {len(text)} characters; the limit is {MAX_MESSAGE_CHARS}."
    if errors:
        raise ComposeError(errors)
    cat = [{"coding": [{"system": CATEGORY_SYSTEM, "code": category, "display": PATIENT_CATEGORIES[category]}],
            "text": PATIENT_CATEGORIES[category]}]
    return _create(svc, ctx, _new(patient_id, author, text, cat, {"text": subject}, [practice] if practice else []))


def _new(patient_id: str, author: tuple[str | None, str], text: str, category: Any, topic: Any,
         recipients: list[dict[str, Any]]) -> dict[str, Any]:
    ref, name = author
    res: dict[str, Any] = {"resourceType": "Communication", "status": "completed",
                           "subject": {"reference": f"Patient/{patient_id}"},
                           "sender": {"reference": ref or f"Patient/{patient_id}", "display": name},
                           "sent": now(), "payload": [{"contentString": text}]}
    if category:
        res["category"] = category
    if topic:
        res["topic"] = topic
    if recipients:
        res["recipient"] = recipients
    return res


def _create(svc: FhirService, ctx: AccessContext, resource: dict[str, Any]) -> str:
    try:
        return svc.create(ctx, "Communication", resource).stored.id
    except Unprocessable as err:
        raise PortalError(err.diagnostics, 422) from err
    except FhirError as err:
        raise PortalError("The message could not be sent: " + err.diagnostics, err.status) from err


def practice_recipient(svc: FhirService, ctx: AccessContext, patient_id: str, configured: str | None,
                       box: Mailbox | None = None) -> dict[str, Any] | None:
    """Who a new message goes to: the configured practice, else the patient's practice, else the last sender."""
    if configured:
        return {"reference": configured}
    try:
        patient = svc.read(ctx, "Patient", patient_id).json()
    except FhirError:
        patient = {}
    for ref in [patient.get("managingOrganization"), *(patient.get("generalPractitioner") or [])]:
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            return {k: v for k, v in ref.items() if k in ("reference", "display")}
    for m in (box.inbox if box else []):
        if _sender_ref(m.raw):
            return {k: v for k, v in m.raw["sender"].items() if k in ("reference", "display")}
    return None
