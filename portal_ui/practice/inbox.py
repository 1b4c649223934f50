"""The practice's Inbox: messages from patients and the people they share access with, newest first;
conversations, Reply (answers any patient-side message, replies too), mark done, New message.

Read state for the practice is the message's `received`; done is the meta tag urn:carespace:inbox-state|done.
The FHIR server's rule (fhir_server/rules/messages.py) decides what may be answered, for every writer.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_server import (
    CATEGORY_SYSTEM,
    MAX_MESSAGE_CHARS,
    MAX_SUBJECT_CHARS,
    PATIENT_CATEGORIES,
    AccessContext,
    FhirError,
    FhirService,
    NotFound,
    PreconditionFailed,
    Unprocessable,
    concept_text,
)

from ..fhir_data import PortalError, ref_id, search_all, when_text
from . import FormError

STATE_SYSTEM = "urn:carespace:inbox-state"
PAGE_SIZE = 25
SCAN_LIMIT = 3000  # the newest messages looked at for one Inbox view
PATIENT_SIDE = ("Patient/", "RelatedPerson/")
STATES = {"open": "Open", "done": "Done", "all": "All"}


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _sender(c: dict[str, Any]) -> str:
    ref = (c.get("sender") or {}).get("reference")
    return ref if isinstance(ref, str) else ""


def from_patient_side(c: dict[str, Any]) -> bool:
    return _sender(c).startswith(PATIENT_SIDE)


def is_done(c: dict[str, Any]) -> bool:
    return any(t.get("system") == STATE_SYSTEM and t.get("code") == "done" for t in (c.get("meta") or {}).get("tag", []))


@dataclass
class Item:
    """One message as the practice sees it."""

    id: str
    patient_id: str
    subject: str
    category: str
    sender_ref: str
    sender: str
    sent: str
    text: str
    received: str | None
    done: bool
    from_patient: bool
    in_response_to: str | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    answer: "Item | None" = None
    patient: str = ""

    @property
    def unread(self) -> bool:
        return self.from_patient and not self.received

    @property
    def sent_text(self) -> str:
        return when_text(self.sent)


def to_item(c: dict[str, Any], names: Mapping[str, str]) -> Item:
    sender = _sender(c)
    display = (c.get("sender") or {}).get("display") or names.get(sender, "") or ("The practice" if sender else "")
    category = ", ".join(concept_text(cat) for cat in c.get("category", []) if concept_text(cat))
    text = "\n".join(p.get("contentString", "") for p in c.get("payload", []) if p.get("contentString"))
    pid = ref_id(c.get("subject"), "Patient") or ""
    return Item(c.get("id", ""), pid, concept_text(c.get("topic")), category, sender, display, c.get("sent") or "",
                text, c.get("received"), is_done(c), from_patient_side(c),
                ref_id((c.get("inResponseTo") or [None])[0], "Communication"), raw=c,
                patient=names.get(f"Patient/{pid}", "") if pid else "")


@dataclass
class InboxPage:
    items: list[Item]
    page: int
    has_more: bool
    unread: int


def inbox(svc: FhirService, ctx: AccessContext, names: Mapping[str, str], category: str = "", state: str = "open",
          page: int = 1) -> InboxPage:
    """Patient-side messages, newest first, filtered by category (rx, health) and state (open, done, all)."""
    items: list[tuple[str, str]] = [("_sort", "-sent")]
    if category in PATIENT_CATEGORIES:
        items.append(("category", f"{CATEGORY_SYSTEM}|{category}"))
    if state == "done":
        items.append(("_tag", f"{STATE_SYSTEM}|done"))
    elif state != "all":
        items.append(("_tag:not", f"{STATE_SYSTEM}|done"))
    found = [c for c in search_all(svc, ctx, "Communication", items, limit=SCAN_LIMIT)
             if from_patient_side(c) and c.get("status") != "entered-in-error"]
    page = max(1, page)
    chunk = found[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    return InboxPage([to_item(c, names) for c in chunk], page, len(found) > page * PAGE_SIZE,
                     sum(1 for c in found if not c.get("received")))


@dataclass
class Conversation:
    """The thread a message belongs to, oldest first, and which message a Reply would answer."""

    patient_id: str
    messages: list[Item]
    opened: Item
    answerable: Item | None  # the newest patient-side message not answered yet


def _load(svc: FhirService, ctx: AccessContext, message_id: str) -> dict[str, Any]:
    try:
        c = svc.read(ctx, "Communication", message_id).json()
    except (NotFound, FhirError):
        raise PortalError("This message does not exist. Go back to the Inbox.", 404) from None
    if c.get("status") == "entered-in-error" or not ref_id(c.get("subject"), "Patient"):
        raise PortalError("This message does not exist. Go back to the Inbox.", 404)
    return c


def conversation(svc: FhirService, ctx: AccessContext, message_id: str, names: Mapping[str, str]) -> Conversation:
    opened = _load(svc, ctx, message_id)
    pid = ref_id(opened.get("subject"), "Patient") or ""
    comms = search_all(svc, ctx, "Communication", [("patient", f"Patient/{pid}")], limit=SCAN_LIMIT)
    by_id = {c["id"]: to_item(c, names) for c in comms if c.get("status") != "entered-in-error"}
    by_id.setdefault(opened["id"], to_item(opened, names))
    answers: dict[str, Item] = {}
    for m in sorted(by_id.values(), key=lambda x: x.sent):
        if m.in_response_to and m.in_response_to not in answers:
            answers[m.in_response_to] = m
    root = by_id[opened["id"]]
    seen = {root.id}
    while root.in_response_to and root.in_response_to in by_id and root.in_response_to not in seen:
        root = by_id[root.in_response_to]
        seen.add(root.id)
    chain = [root]
    while chain[-1].id in answers and answers[chain[-1].id].id not in {m.id for m in chain}:
        chain[-1].answer = answers[chain[-1].id]
        chain.append(answers[chain[-1].id])
    last = chain[-1]
    answerable = last if last.from_patient else None
    return Conversation(pid, chain, by_id[opened["id"]], answerable)


def mark_read(svc: FhirService, ctx: AccessContext, item: Item) -> None:
    """Opening a patient's message marks it read for the practice (Communication.received)."""
    if not item.unread:
        return
    _update(svc, ctx, item.raw, {"received": now()})
    item.received = "now"


def _update(svc: FhirService, ctx: AccessContext, raw: dict[str, Any], changes: dict[str, Any] | None = None,
            tags: list[dict[str, Any]] | None = None) -> None:
    """A new version of the message with `changes` (and `tags` instead of its tags), if nobody changed it meanwhile."""
    body = {**raw, **(changes or {})}
    meta = body.pop("meta", None) or {}
    new_tags = meta.get("tag") if tags is None else tags
    if new_tags:
        body["meta"] = {"tag": new_tags}
    version = meta.get("versionId")
    try:
        svc.update(ctx, "Communication", raw["id"], body, if_match=f'W/"{version}"' if version else None)
    except PreconditionFailed:
        pass  # changed meanwhile (another staff member): their change stands, the page shows it next time


def set_done(svc: FhirService, ctx: AccessContext, message_id: str, done: bool) -> None:
    """Mark a patient's message done (or open again)."""
    c = _load(svc, ctx, message_id)
    if not from_patient_side(c):
        raise PortalError("Only messages from patients are kept open or done in the Inbox.", 422)
    if is_done(c) == done:
        return
    tags = [t for t in (c.get("meta") or {}).get("tag", []) if t.get("system") != STATE_SYSTEM]
    if done:
        tags.append({"system": STATE_SYSTEM, "code": "done", "display": "Done"})
    _update(svc, ctx, c, tags=tags)


def _text(raw: str | None, errors: dict[str, str]) -> str:
    text = (raw or "").strip()
    if not text:
        errors["message"] = "Write the message before sending it."
    elif len(text) > MAX_MESSAGE_CHARS:
        errors["message"] = f"The message is {len(text)} characters; the limit is {MAX_MESSAGE_CHARS}."
    return text


def reply(svc: FhirService, ctx: AccessContext, message_id: str, staff: tuple[str | None, str], text: str) -> str:
    """Answer a patient-side message (a reply too) once; marks it done.  Returns the answer's id."""
    c = _load(svc, ctx, message_id)
    errors: dict[str, str] = {}
    body = _text(text, errors)
    if errors:
        raise FormError(errors)
    pid = ref_id(c.get("subject"), "Patient")
    answer: dict[str, Any] = {
        "resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
        "inResponseTo": [{"reference": f"Communication/{c['id']}"}], "sent": now(),
        "payload": [{"contentString": body}]}
    if staff[0]:
        answer["sender"] = {"reference": staff[0], "display": staff[1]}
    if c.get("sender"):
        answer["recipient"] = [{k: v for k, v in c["sender"].items() if k in ("reference", "display")}]
    for key in ("category", "topic"):
        if c.get(key):
            answer[key] = c[key]
    try:
        new_id = svc.create(ctx, "Communication", answer).stored.id
    except Unprocessable as err:
        raise PortalError(err.diagnostics + ". Open the conversation again to see the answer.", 409) from err
    try:
        set_done(svc, ctx, message_id, True)
    except PortalError:
        pass
    return new_id


def new_message(svc: FhirService, ctx: AccessContext, patient_id: str, staff: tuple[str | None, str],
                form: Mapping[str, str]) -> str:
    """A message from the practice to the patient (category, subject, message)."""
    errors: dict[str, str] = {}
    category = (form.get("category") or "").strip().lower()
    if category not in PATIENT_CATEGORIES:
        errors["category"] = "Choose a category: Rx or Health."
    subject = " ".join((form.get("subject") or "").split())
    if not subject:
        errors["subject"] = "Enter a subject."
    elif len(subject) > MAX_SUBJECT_CHARS:
        errors["subject"] = f"The subject is {len(subject)} characters; the limit is {MAX_SUBJECT_CHARS}."
    text = _text(form.get("message"), errors)
    if errors:
        raise FormError(errors)
    msg: dict[str, Any] = {
        "resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{patient_id}"},
        "recipient": [{"reference": f"Patient/{patient_id}"}], "sent": now(), "topic": {"text": subject},
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category, "display": PATIENT_CATEGORIES[category]}],
                      "text": PATIENT_CATEGORIES[category]}],
        "payload": [{"contentString": text}]}
    if staff[0]:
        msg["sender"] = {"reference": staff[0], "display": staff[1]}
    try:
        return svc.create(ctx, "Communication", msg).stored.id
    except FhirError as err:
        raise FormError({"message": "The message could not be sent: " + err.diagnostics}) from err
