"""Bulk Data $export (FHIR Bulk Data Access 2.0, hl7.org/fhir/uv/bulkdata/export.html): jobs, files, manifest.

    kick-off   GET|POST [base]/$export, Patient/$export, Group/[id]/$export   -> a queued fhir_export_job row
    worker     ExportService.step(): claims one job by a conditional UPDATE, streams each type's search
               (the job's own AccessContext, keyset pages of stored JSON text) into NDJSON files
    status     202 + X-Progress while queued or running, the manifest when done, DELETE cancels
    files      [folder]/[job]/[Type]-[n].ndjson, for the client that asked, until the retention ends

Errors (fhir_server.errors): BadRequest (a parameter the export cannot honour), Forbidden (not a system/
token, or scopes that allow none of the types), NotFound (an unknown, expired or other client's job, or a
file not in its manifest), TooManyRequests (a status URL polled faster than the setting allows).
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from sqlalchemy import and_, or_, select

from ..access.context import AccessContext
from ..errors import BadRequest, Forbidden, NotFound, TooManyRequests
from ..r4.dates import now_instant, parse_range
from ..r4.tables import compartment_params, resource_types
from ..search.executor import SearchExecutor
from ..search.parse import parse
from ..search.plan import KeyPlan
from ..search.rows import CANDIDATE, ROW
from ..storage import export_jobs as jobs
from ..storage.models import CompartmentIndex, ExportJob, ReferenceIndex
from ..storage.repository import Repository

if TYPE_CHECKING:
    from ..service import FhirService

log = logging.getLogger("fhir_server.export")
SPEC = "https://hl7.org/fhir/uv/bulkdata/export.html"
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
PARAMS = ("_outputFormat", "_type", "_since", "_typeFilter", "patient")
NOT_SUPPORTED = ("_elements", "includeAssociatedData", "_until")
UNLISTED = ("AuditEvent",)  # exported only when _type names them


@dataclass(frozen=True)
class ExportSettings:
    """How exports run: where files go, how big one may grow, how long they stay, how fast clients may poll."""

    folder: Path
    file_max_bytes: int = 100 * 1024 * 1024
    retention_s: float = 24 * 3600.0
    min_poll_s: float = 0.2
    max_running: int = 2
    lease_s: float = 30.0
    max_attempts: int = 3
    page: int = 5000


@dataclass
class ExportRequest:
    """A validated kick-off: what to export, for which patients, since when."""

    level: str  # system | patient | group
    request_url: str
    group_id: str | None = None
    types: list[str] | None = None
    since: str | None = None
    type_filters: dict[str, str] = field(default_factory=dict)  # type -> search query
    patients: list[str] | None = None


@dataclass
class ExportStatus:
    """What a poll of the status URL answers: in progress (with progress text), done (manifest) or failed."""

    state: str  # in-progress | done | failed
    progress: str = ""
    manifest: dict[str, Any] | None = None
    error: str | None = None
    expires: float | None = None


def kickoff_items(query: Iterable[tuple[str, str]], body: Any) -> list[tuple[str, str]]:
    """The kick-off parameters of a query string and of a POSTed Parameters resource, as (name, value)."""
    items = list(query)
    if body is None:
        return items
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("POST $export takes a Parameters resource")
    for p in body.get("parameter") or []:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise BadRequest("Each Parameters.parameter needs a name", expression=["Parameters.parameter"])
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if isinstance(value, dict):
            value = value.get("reference")
        if not isinstance(value, str):
            raise BadRequest(f"Parameter {p['name']} needs a string, instant or reference value",
                             expression=[f"Parameters.parameter.{p['name']}"])
        items.append((p["name"], value))
    return items


def parse_kickoff(level: str, items: list[tuple[str, str]], request_url: str,
                  group_id: str | None = None) -> ExportRequest:
    """Validate kick-off parameters (export.html#query-parameters); 400 for any the server cannot honour."""
    req = ExportRequest(level, request_url, group_id)
    allowed = resource_types()
    for key, value in items:
        if key in ("_outputFormat", "_since"):
            value = value.strip().replace(" ", "+")  # a '+' sent unencoded in a query string arrives as a space
        if key == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                raise BadRequest(f"_outputFormat {value!r} is not supported; use {', '.join(OUTPUT_FORMATS)}",
                                 expression=["_outputFormat"])
        elif key == "_type":
            types = [t.strip() for t in value.split(",") if t.strip()]
            bad = [t for t in types if t not in allowed]
            if bad or not types:
                raise BadRequest(f"_type names types this export cannot include: {', '.join(bad) or value!r}",
                                 expression=["_type"])
            req.types = list(dict.fromkeys([*(req.types or []), *types]))
        elif key == "_since":
            if parse_range(value) is None or "T" not in value:
                raise BadRequest(f"_since must be a FHIR instant, not {value!r}", expression=["_since"])
            req.since = value
        elif key == "_typeFilter":
            rtype, _, query = value.partition("?")
            if rtype not in allowed or not query:
                raise BadRequest(f"_typeFilter {value!r} must be [type]?[search query] of an exported type",
                                 expression=["_typeFilter"])
            if rtype in req.type_filters:
                raise BadRequest(f"Only one _typeFilter per type is supported ({rtype})", expression=["_typeFilter"])
            parse(rtype, parse_qsl(query, keep_blank_values=True), strict=True)  # 400 for what search refuses
            req.type_filters[rtype] = query
        elif key == "patient":
            if level == "system":
                raise BadRequest("The patient parameter applies to Patient and Group exports only",
                                 expression=["patient"])
            ids = [v.strip().removeprefix("Patient/") for v in value.split(",") if v.strip()]
            if not ids or any("/" in i for i in ids):
                raise BadRequest(f"patient must reference Patients, not {value!r}", expression=["patient"])
            req.patients = list(dict.fromkeys([*(req.patients or []), *ids]))
        elif key in NOT_SUPPORTED:
            raise BadRequest(f"{key} is not supported by this server", expression=[key])
    if req.types is not None:
        missing = [t for t in req.type_filters if t not in req.types]
        if missing:
            raise BadRequest(f"_typeFilter names types outside _type: {', '.join(missing)}", expression=["_typeFilter"])
    return req


def compartment_types() -> list[str]:
    """The types of a patient's compartment (R4 compartmentdefinition-patient) and Patient itself."""
    return sorted({t for t in resource_types() if compartment_params(t)} | {"Patient"})


def _access_of(ctx: AccessContext) -> str:
    return json.dumps({"scopes": list(ctx.scopes), "client_id": ctx.client_id, "trusted": ctx.trusted,
                       "label": ctx.label})


def _context(access: str) -> AccessContext:
    """The AccessContext a job runs as, rebuilt from its row (the token's scopes and client)."""
    data = json.loads(access)
    if data.get("trusted"):
        return AccessContext.system(data.get("label") or "system")
    return AccessContext.from_scopes(data["scopes"], client_id=data.get("client_id"))


class Cancelled(Exception):
    """The job's row is gone or another worker holds it: stop writing."""


class _Files:
    """NDJSON files of one type, split past a size; counts per file."""

    def __init__(self, folder: Path, rtype: str, max_bytes: int) -> None:
        self.folder, self.rtype, self.max_bytes = folder, rtype, max_bytes
        self.done: list[tuple[str, int]] = []  # (file name, resources)
        self._fh: Any = None
        self._name, self._count, self._size = "", 0, 0

    def write(self, text: str) -> None:
        if self._fh is None or self._size >= self.max_bytes:
            self._next()
        self._fh.write(text)
        self._fh.write("\n")
        self._count += 1
        self._size += len(text) + 1

    def _next(self) -> None:
        self.close()
        self._name = f"{self.rtype}-{len(self.done) + 1}.ndjson"
        self._fh = open(self.folder / self._name, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed in close()
        self._count = self._size = 0

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self.done.append((self._name, self._count))


class ExportService:
    """Bulk Data export for one FhirService: kick-off, status, cancel, files, and the worker's step."""

    def __init__(self, svc: "FhirService", settings: ExportSettings,
                 record: Callable[[dict[str, Any]], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.svc = svc
        self.settings = settings
        self.record = record  # writes one AuditEvent (AuditLog.record)
        self.clock = clock
        self.worker_id = uuid.uuid4().hex
        self.on_queued: list[Callable[[], None]] = []  # wakes the workers

    # ---- the client's side ----
    def kick_off(self, ctx: AccessContext, req: ExportRequest) -> str:
        """Queue an export (export.html#bulk-data-kick-off-request); returns the job id."""
        types = self._types(ctx, req)
        params = asdict(req)
        params["types"] = types
        with self.svc.unit(write=True) as repo:
            if req.level == "group":
                assert req.group_id is not None
                params["patients"] = self._members(repo, ctx, req.group_id, req.patients)
            job_id = uuid.uuid4().hex
            jobs.add(repo, ExportJob(id=job_id, client_id=ctx.client_id, access=_access_of(ctx),
                                     request_url=req.request_url, params=json.dumps(params), status="queued",
                                     progress="queued", created_at=self.clock(), lease_until=0.0, attempts=0,
                                     last_poll=0.0))
        self._audit(ctx, "queued", req, job_id, None)
        for wake in list(self.on_queued):
            wake()
        return job_id

    def _types(self, ctx: AccessContext, req: ExportRequest) -> list[str]:
        """The types the export writes: those asked for (403 for one the scopes refuse), else all the scopes allow."""
        if not ctx.trusted and ctx.kind != "system":
            raise Forbidden("Bulk export needs a SMART Backend Services token with system/ scopes")
        # without _type: every type, except the audit trail (it grows with every access, the export's own too);
        # it is exported when _type names it
        wanted = req.types or [t for t in (compartment_types() if req.level != "system" else sorted(resource_types()))
                               if t not in UNLISTED]
        if ctx.trusted:
            return wanted
        refused = [t for t in wanted if not ctx.grants_for(t, "s")]
        if req.types and refused:
            raise Forbidden(f"The granted scopes do not allow exporting {', '.join(refused)}", expression=["_type"])
        allowed = [t for t in wanted if t not in refused]
        if not allowed:
            raise Forbidden("The granted scopes do not allow exporting any resource type")
        return allowed

    def _members(self, repo: Repository, ctx: AccessContext, group_id: str, only: list[str] | None) -> list[str]:
        """The Patients a Group lists (member.entity, not inactive); 404/403 for a Group the caller cannot read."""
        self.svc.check_type("Group", group_id)
        text, _, _, _ = self.svc.visible_current(repo, ctx, "Group", group_id)
        out: list[str] = []
        for m in json.loads(text).get("member") or []:
            ref = (m.get("entity") or {}).get("reference") if isinstance(m, dict) else None
            if isinstance(ref, str) and not m.get("inactive") and "Patient/" in ref:
                out.append(ref.rsplit("Patient/", 1)[1].split("/", 1)[0])
        members = list(dict.fromkeys(out))
        return [p for p in members if p in only] if only is not None else members

    def _job(self, repo: Repository, ctx: AccessContext, job_id: str) -> ExportJob:
        """The caller's own live job; 404 for an unknown, expired or another client's job."""
        job = jobs.get(repo, job_id)
        if job is None or (job.client_id != ctx.client_id and not ctx.trusted) or self._expired(job):
            raise NotFound(f"No export job {job_id[:64]}")
        return job

    def _expired(self, job: ExportJob) -> bool:
        return job.finished_at is not None and job.finished_at + self.settings.retention_s < self.clock()

    def status(self, ctx: AccessContext, job_id: str) -> ExportStatus:
        """The status of a job (export.html#bulk-data-status-request); 429 when polled too often."""
        now = self.clock()
        with self.svc.unit(write=True) as repo:
            job = self._job(repo, ctx, job_id)
            if job.status in ("queued", "running"):
                wait = self.settings.min_poll_s - (now - job.last_poll)
                if wait > 0:
                    raise TooManyRequests("The status of this export was asked for too often; wait and ask again",
                                          headers={"Retry-After": str(max(1, math.ceil(wait)))})
                job.last_poll = now
                return ExportStatus("in-progress", job.progress or job.status)
            expires = (job.finished_at or now) + self.settings.retention_s
            if job.status == "failed":
                return ExportStatus("failed", error=job.error or "The export failed", expires=expires)
            manifest = json.loads(job.manifest or "{}")
            return ExportStatus("done", manifest=manifest, expires=expires)

    def cancel(self, ctx: AccessContext, job_id: str) -> None:
        """Cancel a job and remove its files (export.html#bulk-data-delete-request)."""
        with self.svc.unit(write=True) as repo:
            job = self._job(repo, ctx, job_id)
            jobs.remove(repo, job)
        self._remove(job_id)
        self._audit(ctx, "cancelled", None, job_id, None)

    def file(self, ctx: AccessContext, job_id: str, name: str) -> Path:
        """The path of one output file of the caller's finished job (export.html#file-request)."""
        with self.svc.unit() as repo:
            job = self._job(repo, ctx, job_id)
            manifest = json.loads(job.manifest or "{}") if job.status == "done" else {}
        names = {o["url"].rsplit("/", 1)[-1] for key in ("output", "error", "deleted") for o in manifest.get(key, [])}
        path = self.settings.folder / job_id / name
        if name not in names or not path.is_file():
            raise NotFound(f"No file {name[:80]} in export {job_id[:64]}")
        return path

    def status_url(self, job_id: str) -> str:
        return f"{self.svc.base_url}/$export-status/{job_id}"

    def file_url(self, job_id: str, name: str) -> str:
        return f"{self.svc.base_url}/$export-file/{job_id}/{name}"

    # ---- the worker's side ----
    def step(self) -> float:
        """Remove expired jobs, then run one job if one is waiting; seconds until the next look."""
        self.sweep()
        job_id = self.claim()
        if job_id is None:
            return 5.0
        self.run(job_id)
        return 0.0

    def sweep(self) -> int:
        """Delete jobs past their retention and their files; fail jobs whose runners died too often."""
        now = self.clock()
        with self.svc.unit(write=True) as repo:
            gone = jobs.expire(repo, now - self.settings.retention_s)
            jobs.fail_stale(repo, now, self.settings.max_attempts,
                            f"The export stopped {self.settings.max_attempts} times (its worker ended); ask again")
        for job_id in gone:
            self._remove(job_id)
        return len(gone)

    def claim(self) -> str | None:
        """Take one waiting job (or one whose worker's lease ran out) with a conditional UPDATE: one runner each."""
        now = self.clock()
        with self.svc.unit(write=True) as repo:
            if jobs.running(repo, now) >= self.settings.max_running:
                return None
            for job_id in jobs.waiting(repo, now, 5):
                if jobs.claim(repo, job_id, now, self.worker_id, now + self.settings.lease_s):
                    return job_id
        return None

    def _renew(self, job_id: str, progress: str) -> None:
        """Extend the lease (and say how far the job got); Cancelled when the job was deleted or taken over."""
        with self.svc.unit(write=True) as repo:
            if not jobs.renew(repo, job_id, self.worker_id, self.clock() + self.settings.lease_s, progress):
                raise Cancelled(job_id)

    def run(self, job_id: str) -> None:
        """Write a claimed job's files and manifest; a failure is reported in the job, never raised."""
        with self.svc.unit() as repo:
            job = jobs.get(repo, job_id)
            if job is None:
                return
            ctx, params = _context(job.access), json.loads(job.params)
            request_url = job.request_url
        try:
            manifest, counts = self._write(job_id, ctx, params, request_url)
        except Cancelled:
            self._remove(job_id)
            return
        except Exception as exc:  # noqa: BLE001 - reported to the client as a failed job
            log.exception("export %s failed", job_id)
            self._finish(job_id, None, f"The export failed: {type(exc).__name__}")
            self._remove(job_id)
            return
        if self._finish(job_id, manifest, None):
            self._audit(ctx, "completed", None, job_id, counts, params)
        else:
            self._remove(job_id)

    def _finish(self, job_id: str, manifest: dict[str, Any] | None, error: str | None) -> bool:
        with self.svc.unit(write=True) as repo:
            return jobs.finish(repo, job_id, self.worker_id, {
                "status": "done" if error is None else "failed", "finished_at": self.clock(),
                "manifest": json.dumps(manifest) if manifest is not None else None, "error": error,
                "progress": "done" if error is None else "failed"})

    def _write(self, job_id: str, ctx: AccessContext, params: dict[str, Any],
               request_url: str) -> tuple[dict[str, Any], dict[str, int]]:
        """Stream every type's matches into NDJSON files; the manifest (export.html#response---complete-status)."""
        folder = self.settings.folder / job_id
        shutil.rmtree(folder, ignore_errors=True)  # a job resumed after its worker died starts again
        folder.mkdir(parents=True)
        stamp, _ = now_instant()
        if not params["types"] or "AuditEvent" in params["types"]:
            self.svc.settle_audit("AuditEvent")
        output: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        renewed = self.clock()
        total = 0
        for rtype in self._present(params["types"]):
            files = _Files(folder, rtype, self.settings.file_max_bytes)
            try:
                for text in self._texts(ctx, params, rtype):
                    files.write(text)
                    total += 1
                    if total % 1000 == 0 and self.clock() - renewed > min(2.0, self.settings.lease_s / 4):
                        self._renew(job_id, f"{rtype}: {total} resources written")
                        renewed = self.clock()
            finally:
                files.close()
            for name, n in files.done:
                output.append({"type": rtype, "url": self.file_url(job_id, name), "count": n})
                counts[rtype] = counts.get(rtype, 0) + n
        manifest: dict[str, Any] = {"transactionTime": stamp, "request": request_url, "requiresAccessToken": True,
                                    "output": output, "error": []}
        if params.get("since"):
            manifest["deleted"] = self._deleted(job_id, folder, ctx, params)
        return manifest, counts

    def _deleted(self, job_id: str, folder: Path, ctx: AccessContext, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Resources deleted after _since, as transaction Bundles of DELETE entries (export.html#response---complete-
        status, `deleted`). System level only, for types without scope or type filters: a deleted resource has no
        index rows, so neither a compartment nor a filter can be judged on it."""
        if params["level"] != "system":
            return []
        types = [t for t in params["types"] if t not in params["type_filters"]
                 and (ctx.trusted or ctx.filters(ctx.grants_for(t, "s")) is None)]
        low = parse_range(params["since"])
        if not types or low is None:
            return []
        files = _Files(folder, "Deleted", self.settings.file_max_bytes)
        try:
            with self.svc.unit() as repo:
                for rtype, fid in jobs.deleted_since(repo, types, low[1]):
                    files.write(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
                        {"request": {"method": "DELETE", "url": f"{rtype}/{fid}"}}]}, separators=(",", ":")))
        finally:
            files.close()
        return [{"type": "Bundle", "url": self.file_url(job_id, name), "count": n} for name, n in files.done]

    def _present(self, types: list[str]) -> list[str]:
        """The types among `types` that have any live resource (one indexed look-up each, in one unit)."""
        with self.svc.unit() as repo:
            return [t for t in types if jobs.any_of_type(repo, t)]

    def _texts(self, ctx: AccessContext, params: dict[str, Any], rtype: str) -> Iterator[str]:
        """The stored JSON of every resource of `rtype` a search under `ctx` finds, in keyset pages by pk."""
        items = parse_qsl(params["type_filters"].get(rtype, ""), keep_blank_values=True)
        if params.get("since"):
            items.append(("_lastUpdated", f"gt{params['since']}"))
        req = parse(rtype, items, strict=True)
        extra, driven = ([], False) if ctx.trusted else self.svc.guard.search_conditions(ctx, rtype)
        if params["level"] != "system":
            extra = [*extra, self._compartment(params.get("patients"), rtype)]
            driven = True
        plan = KeyPlan.build(self.svc.guard.builder_for(ctx), req, extra, None, driven)
        cursor: list[Any] | None = None
        page = self.settings.page
        while True:
            with self.svc.unit() as repo:
                rows = SearchExecutor(repo.s, self.svc.guard.builder_for(ctx), self.svc.codec).keyset(plan, page, cursor)
            for row in rows:
                yield row[3]
            if len(rows) < page:
                return
            cursor = [rows[-1][0]]

    def _compartment(self, patients: list[str] | None, rtype: str) -> Any:
        """Resources of `rtype` in the compartment of `patients` (None: of any patient); of a type outside the
        compartment (named by _type), those the compartment's resources refer to or that refer to the patients
        (the Practitioners, Organizations, Locations, Medications, Devices of their records)."""
        if rtype != "Patient" and not compartment_params(rtype):
            ref, comp = ReferenceIndex.__table__.alias("xr").c, CompartmentIndex.__table__.alias("xc").c
            members = select(comp.res_pk).where(*([comp.patient_id.in_(patients)] if patients is not None else []))
            referenced = select(ref.target_id).where(ref.target_type == rtype, ref.res_pk.in_(members))
            referring = select(ref.res_pk).where(ref.res_type == rtype, ref.target_type == "Patient",
                                                 *([ref.target_id.in_(patients)] if patients is not None else []))
            return or_(and_(ROW.res_type == rtype, ROW.fhir_id.in_(referenced)), ROW.pk.in_(referring))
        if rtype == "Patient":
            return ROW.fhir_id.in_(patients) if patients is not None else ROW.res_type == "Patient"
        if patients is not None:
            return self.svc.builder.compartment(frozenset(patients), rtype)
        comp = CompartmentIndex.__table__.c
        return ROW.pk.in_(select(comp.res_pk.label(CANDIDATE)).where(comp.res_type == rtype).distinct())

    def _remove(self, job_id: str) -> None:
        shutil.rmtree(self.settings.folder / job_id, ignore_errors=True)

    def _audit(self, ctx: AccessContext, what: str, req: ExportRequest | None, job_id: str,
               counts: dict[str, int] | None, params: dict[str, Any] | None = None) -> None:
        """One AuditEvent per kick-off, cancel and completed export: who, which export, how many of each type."""
        if self.record is None or ctx.trusted:
            return
        from ..audit import audit_event
        level = req.level if req else (params or {}).get("level", "")
        detail = f"$export {what} (job {job_id}, {level} level)"
        if counts is not None:
            detail += f": {sum(counts.values())} resources" + "".join(
                f", {t} {n}" for t, n in sorted(counts.items()))
        group = (req.group_id if req else (params or {}).get("group_id"))
        try:
            self.record(audit_event(action="operation", subtype="operation", agent_ref=ctx.user,
                                    agent_display=ctx.label or ctx.client_id or "app", patient_id=None,
                                    entities=[f"Group/{group}"] if group else [], ok=True,
                                    client_id=ctx.client_id, detail=detail))
        except Exception:  # noqa: BLE001 - the export is not undone by an audit failure; it is logged
            log.exception("could not audit export %s", job_id)


__all__ = ["ExportRequest", "ExportService", "ExportSettings", "ExportStatus", "OUTPUT_FORMATS", "SPEC",
           "kickoff_items", "parse_kickoff"]
