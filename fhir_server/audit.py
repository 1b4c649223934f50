"""AuditEvent recording: every access by a person or app, and every security event, as FHIR AuditEvent.

Audit rows are written in their own transactions (never the request's), so a failed request is still audited.
"""
from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .access.context import AccessContext
from .errors import FhirError
from .r4.dates import now_instant

if TYPE_CHECKING:
    from .service import FhirService

log = logging.getLogger("carespace.audit")

_RESTFUL = "http://hl7.org/fhir/restful-interaction"
_RESTFUL_CODES = {"read", "vread", "update", "patch", "delete", "history", "history-instance", "history-type",
                  "history-system", "create", "search", "search-type", "search-system", "capabilities",
                  "transaction", "batch", "operation"}
_LOCAL_SUBTYPES = "urn:carespace:audit-subtype"  # logins, invitations, token events: no HL7 code exists
_ACTIONS = {"read": "R", "vread": "R", "history": "R", "search": "E", "create": "C", "update": "U", "delete": "D", "login": "E", "execute": "E"}
_REST = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
         "display": "RESTful Operation"}
_SECURITY = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110113", "display": "Security Alert"}
_USER_AUTH = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114",
              "display": "User Authentication"}


def audit_event(*, action: str, subtype: str, agent_ref: str | None, agent_display: str, patient_id: str | None,
                entities: list[str], ok: bool, kind: str = "rest", client_id: str | None = None,
                detail: str | None = None, searched: str | None = None) -> dict[str, Any]:
    """Build an R4 AuditEvent (type rest / security / user-authentication)."""
    stamp, _ = now_instant()
    etype = {"rest": _REST, "security": _SECURITY, "auth": _USER_AUTH}[kind]
    who: dict[str, Any] = {"display": agent_display or "unknown"}
    if agent_ref:
        who["reference"] = agent_ref
    agents: list[dict[str, Any]] = [{"who": who, "requestor": True}]
    if client_id:
        agents.append({"who": {"identifier": {"system": "urn:carespace:client", "value": client_id},
                               "display": f"app {client_id}"}, "requestor": False})
    ents: list[dict[str, Any]] = []
    if patient_id:
        ents.append({"what": {"reference": f"Patient/{patient_id}"},
                     "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1",
                              "display": "Person"}})
    for ref in dict.fromkeys(entities):  # every resource returned, so the patient's Access log is complete
        if ref != f"Patient/{patient_id}":
            ents.append({"what": {"reference": ref}})
    if searched:  # the query itself, by the type it searched (its parameters may name other patients)
        ents.append({"type": {"system": "http://hl7.org/fhir/resource-types", "code": searched},
                     "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24",
                              "display": "Query"}})
    if detail:
        ents.append({"what": {"display": "detail"}, "description": detail[:500]})
    ev: dict[str, Any] = {
        "resourceType": "AuditEvent", "type": etype,
        "subtype": [{"system": _RESTFUL if subtype in _RESTFUL_CODES else _LOCAL_SUBTYPES, "code": subtype}],
        "action": _ACTIONS.get(subtype, "E"), "recorded": stamp, "outcome": "0" if ok else "4",
        "agent": agents, "source": {"observer": {"display": "CareSpace"}},
    }
    if ents:
        ev["entity"] = ents
    return ev


class AuditBacklog(FhirError):
    """The access-event queue stayed full: the access is refused rather than left unrecorded."""

    status, code = 503, "transient"

    def __init__(self) -> None:
        super().__init__("The server is busy recording accesses; nothing was returned. Try again in a moment",
                         headers={"Retry-After": "2"})


class AuditLog:
    """Writes AuditEvents through the FHIR store (trusted), never failing the caller's request.

    Security events (`record`) are written at once, each in its own transaction. Access events (`access`, one
    per interaction of a person or app) are queued and written in batches by a background thread, so a read
    never waits for a write transaction; whoever reads AuditEvents calls `flush()` first (FhirService does,
    through its `settle` hook), and pending events are flushed at interpreter exit.
    """

    def __init__(self, svc: "FhirService", batch: int = 200, linger: float = 0.05, idle: float = 2.0,
                 hold: float | None = None, limit: int = 2_000, full_wait: float = 5.0,
                 lag_limit: float = 1.0) -> None:
        self.svc = svc
        self.batch, self.linger, self.idle = batch, linger, idle
        # how long one of the writer's transactions may write before it commits: on SQLite it holds the
        # database's only write lock meanwhile, so briefly; on PostgreSQL it blocks nobody, so a whole batch
        engine = getattr(svc, "engine", None)
        sqlite = engine is not None and engine.dialect.name == "sqlite"
        self.hold = hold if hold is not None else (0.02 if sqlite else 1.0)
        self.min_per_unit = 10  # even when the process is busy and writing is slow
        self.limit, self.full_wait = limit, full_wait  # the queue's bound, and how long an access waits for room
        self.lag_limit = lag_limit  # the queue also counts as full while its oldest event waits longer than this
        self.max_pending = 0  # the most events ever waiting at once
        self.max_lag = 0.0  # the longest an event waited to be written (seconds)
        self.refused = 0  # accesses refused (503) because the queue stayed full
        self._queue: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._queued = 0  # events ever queued
        self._done = 0  # events written (or given up on after logging them)
        self._urgent = False
        self._thread: threading.Thread | None = None
        _LIVE.add(self)

    def record(self, event: dict[str, Any]) -> None:
        """Write one event now, in its own transaction (security events: logins, token decisions)."""
        self._write([event])

    def enqueue(self, event: dict[str, Any]) -> None:
        """Queue one event for the background writer (started on first use, it stops when idle).

        The queue is bounded in size and in lag: while `limit` events wait, or the oldest has waited more than
        `lag_limit` seconds, the caller waits for room up to `full_wait` seconds (a busy process thereby gives
        the writer its turn), then the access is refused with 503 (no access goes unrecorded, and memory and
        lag stay bounded)."""
        with self._cond:
            if self._full():
                self._urgent = True
                self._cond.notify_all()
                if not self._cond.wait_for(lambda: not self._full(), self.full_wait):
                    self.refused += 1
                    raise AuditBacklog()
            event["_queued_at"] = time.monotonic()
            self._queue.append(event)
            self._queued += 1
            self.max_pending = max(self.max_pending, self._queued - self._done)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="carespace-audit", daemon=True)
                self._thread.start()
            elif len(self._queue) >= self.batch:
                self._cond.notify_all()

    def _full(self) -> bool:
        if len(self._queue) >= self.limit:
            return True
        return bool(self._queue) and time.monotonic() - self._queue[0].get("_queued_at", time.monotonic()) > self.lag_limit

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every event queued so far is in the database; False if that took over `timeout`."""
        with self._cond:
            target = self._queued
            if self._done >= target:
                return True
            self._urgent = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    @property
    def pending(self) -> int:
        return self._queued - self._done

    def stats(self) -> dict[str, Any]:
        """The queue's figures since start: events queued and written, the most waiting at once, the longest
        wait before being written (ms), accesses refused because it stayed full."""
        return {"queued": self._queued, "written": self._done, "pending": self.pending, "limit": self.limit,
                "max_pending": self.max_pending, "max_lag_ms": round(self.max_lag * 1000, 1),
                "refused": self.refused}

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: bool(self._queue), self.idle):
                    self._thread = None  # idle: stop; the next enqueue starts a new writer
                    return
                self._cond.wait_for(lambda: self._urgent or len(self._queue) >= self.batch, self.linger)
                events = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
                if not self._queue:
                    self._urgent = False
                self._cond.notify_all()  # room in the queue for callers waiting on a full one
            oldest = min((e.pop("_queued_at", None) or time.monotonic() for e in events), default=None)
            try:
                self._write(self._expand(events))
            except Exception:  # noqa: BLE001 - the writer must outlive any event; _write already logged it
                log.exception("AuditEvent writer error")
            finally:
                with self._cond:
                    self._done += len(events)
                    if oldest is not None:
                        self.max_lag = max(self.max_lag, time.monotonic() - oldest)
                    self._cond.notify_all()

    def _write(self, events: list[dict[str, Any]]) -> None:
        """The events in as few transactions as holding the write lock briefly allows (each commits after
        `hold` seconds, so other writers get their turn in between); a transaction that fails is written again
        event by event, so one bad event loses no others."""
        while len(events) > 1:
            done = self._write_some(events)
            if done == 0:
                break
            events = events[done:]
        if not events:
            return
        try:
            with self.svc.unit(write=True) as repo:
                for event in events:
                    repo.write(dict(event, id=str(uuid.uuid4())), None, "POST")
            return
        except Exception:  # noqa: BLE001 - auditing must not break the audited action; it is logged instead
            if len(events) == 1:
                log.exception("could not record AuditEvent %s: %s", events[0].get("subtype"),
                              json.dumps(events[0], default=repr))
                return
        for event in events:
            self._write([event])

    def _write_some(self, events: list[dict[str, Any]]) -> int:
        """Write events from the start of `events` in one transaction for up to `hold` seconds; how many (0: the
        transaction failed, nothing of it was written)."""
        n = 0
        try:
            with self.svc.unit(write=True) as repo:
                start = time.perf_counter()
                for event in events:
                    repo.write(dict(event, id=str(uuid.uuid4())), None, "POST")
                    n += 1
                    if n >= self.min_per_unit and time.perf_counter() - start >= self.hold:
                        break
        except Exception:  # noqa: BLE001 - written again one by one by _write
            return 0
        return n

    def access(self, ctx: AccessContext, action: str, rtype: str, refs: list[str], ok: bool,
               patients: Iterable[str] | None = None, named: Iterable[str] = ()) -> None:
        """FhirService hook: queued, then filed by the writer as one AuditEvent per patient touched."""
        known = list(patients) if patients is not None else None
        if known is None and ctx.patient_ids is not None and len(ctx.patient_ids) == 1:
            known = list(ctx.patient_ids)  # a caller confined to one patient touches only that one's data
        self.enqueue({"_access": _Access(ctx, action, rtype, refs, ok, known, list(named))})

    def _expand(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Access records become AuditEvents: the patients of what was touched are looked up in one query."""
        accesses = [item["_access"] for item in items if "_access" in item]
        lookup = sorted({tuple(r.split("/", 1)) for a in accesses if a.patients is None for r in a.refs
                         if "/" in r and not r.startswith("Patient/")})
        owners: dict[tuple[str, str], set[str]] = {}
        if lookup:
            try:
                with self.svc.unit() as repo:
                    owners = repo.patients_of(lookup)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - the events are still written, filed without their patients
                log.exception("could not look up the patients of audited resources")
        out: list[dict[str, Any]] = []
        for item in items:
            if "_access" not in item:
                out.append(item)
                continue
            out.extend(item["_access"].events(owners))
        return out


class _Access:
    """One interaction of a person or app, to be filed once per patient whose data it touched."""

    def __init__(self, ctx: AccessContext, action: str, rtype: str, refs: list[str], ok: bool,
                 patients: list[str] | None, named: list[str]) -> None:
        self.ctx, self.action, self.rtype, self.refs, self.ok = ctx, action, rtype, refs, ok
        self.patients, self.named = patients, named

    def events(self, owners: dict[tuple[str, str], set[str]]) -> list[dict[str, Any]]:
        by_patient: dict[str, list[str]] = {}
        shared: list[str] = []
        for ref in self.refs:
            if self.patients is not None:
                whose: set[str] | list[str] = self.patients
            elif ref.startswith("Patient/"):
                whose = [ref.split("/", 1)[1]]
            else:
                whose = owners.get(tuple(ref.split("/", 1)), set())  # type: ignore[arg-type]
            if not whose:
                shared.append(ref)
            for p in whose:
                by_patient.setdefault(p, []).append(ref)
        for p in [*(self.patients or ()), *self.named]:
            by_patient.setdefault(p, [])
        ctx = self.ctx
        groups: list[tuple[str | None, list[str]]] = [(p, refs + shared) for p, refs in sorted(by_patient.items())]
        return [audit_event(action=self.action, subtype=self.action, agent_ref=ctx.user,
                            agent_display=ctx.label or ctx.user or "app", patient_id=p, entities=refs, ok=self.ok,
                            client_id=ctx.client_id, searched=self.rtype if self.action == "search" else None)
                for p, refs in (groups or [(None, shared)])]


_LIVE: weakref.WeakSet[AuditLog] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    """Queued access events are written before the process ends (a clean shutdown loses none)."""
    for audit_log in list(_LIVE):
        if audit_log.pending and not audit_log.flush(timeout=10):
            log.error("%d AuditEvents were not written before exit", audit_log.pending)
