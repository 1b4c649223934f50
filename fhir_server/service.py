"""The FHIR service layer: every interaction, with access enforcement, for HTTP and in-process callers."""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import committed, rules
from .access.context import AccessContext
from .access.guard import Guard
from .errors import BadRequest, Conflict, Gone, MethodNotAllowed, NotFound, PreconditionFailed
from .operations.everything import EverythingPage, EverythingRequest, everything
from .operations.history import history
from .operations.transaction import BundleProcessor
from .r4.tables import compartment_params, resource_types
from .r4.validation import is_valid_id, validate_resource
from .rules.documents import file_existing_binaries
from .search.conditions import ConditionBuilder
from .search.executor import CursorCodec, SearchExecutor, SearchPage
from .search.includes import add_includes
from .search.parse import SearchRequest, parse
from .storage.indexing import Extractor, split_reference
from .storage.models import ResourceRow, ResourceVersion
from .storage.replica import ReadReplica, reader_of
from .storage.repository import CurrentText, Repository, read_current_text
from .stored import Stored, UnitOfWork, WriteResult

# Types whose resources are never changed or removed once written, by anyone (the audit trail, HIPAA
# 164.312(b)); the CapabilityStatement lists no update or delete for them (scripts/gen_capability.py).
APPEND_ONLY = frozenset({"AuditEvent"})

# (caller, action, type, resources touched, succeeded, the patients they belong to when the caller knows them,
#  patients the request named)
log = logging.getLogger("fhir_server.service")
AuditHook = Callable[[AccessContext, str, str, list[str], bool, "Iterable[str] | None", list[str]], None]


def _same_resource_written(exc: IntegrityError) -> bool:
    """A unique violation of a resource's id or of its version number: a concurrent write of the same resource."""
    text = str(exc.orig)
    return any(name in text for name in ("uq_fhir_version", "uq_fhir_resource_type_id", "fhir_version.res_pk",
                                         "fhir_resource.res_type"))


class FhirService:
    """Entry point for all FHIR operations; one instance per app, one DB transaction per call."""

    def __init__(self, sessions: sessionmaker[Session], base_url: str, secret: bytes,
                 audit: AuditHook | None = None, replica: ReadReplica | None = None) -> None:
        self.sessions = sessions
        self.replica = replica  # reads that may go to a streaming replica (storage/replica.py)
        self.engine: Engine = sessions.kw["bind"]
        self.base_url = base_url.rstrip("/")
        self.extractor = Extractor(self.base_url)
        self.builder = ConditionBuilder(self.base_url)
        self.guard = Guard(self.builder, self.extractor)
        self.codec = CursorCodec(secret)
        self.audit = audit
        self.settle: Callable[[], object] | None = None  # writes queued AuditEvents (AuditLog.flush)
        self.on_commit: list[committed.CommitHook] = []  # told of every committed unit that wrote resources

    @contextmanager
    def unit(self, write: bool = False, reader: str | None = None, fence: str | None = None) -> Iterator[Repository]:
        """One atomic unit of work: commit on success, roll back on any error.

        `reader`: a read that may go to the replica once it has this reader's writes; `fence`: a write
        whose reader's next reads must see it (storage/replica.py).
        """
        session = None
        if reader is not None and not write and self.replica is not None:
            session = self.replica.session_for(reader)
        on_replica = session is not None
        with session or self.sessions() as session:
            if not on_replica:  # a replica session is connected already (it was asked how far it has replayed)
                session.connection(execution_options={"write": write})
            try:
                repo = Repository(session, self.extractor)
                yield repo
                repo.flush_index()
                written = committed.take(session.info)
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                if _same_resource_written(exc):  # PostgreSQL: two writers read the same current version
                    raise Conflict("The resource was changed by another request at the same moment; nothing was "
                                   "changed. Read it again and retry") from exc
                raise
            except DBAPIError as exc:
                session.rollback()
                if on_replica and self.replica is not None:
                    self.replica.failed(exc)
                raise
            except BaseException:
                session.rollback()
                raise
        if written is not None:
            if fence is not None and self.replica is not None:
                self.replica.fence(fence)
            self._committed(written)

    def _committed(self, commit: committed.Commit) -> None:
        """Tell the hooks what a unit wrote; the data is stored already, so a failing hook is logged, not raised."""
        for hook in list(self.on_commit):
            try:
                hook(commit)
            except Exception:  # noqa: BLE001 - never turn a stored write into an error answer
                log.exception("a commit hook failed after %d written versions", len(commit.writes))

    @contextmanager
    def transaction(self, write: bool = True, ctx: AccessContext | None = None) -> Iterator[UnitOfWork]:
        """A unit of work for other packages: their rows and FHIR writes in one database transaction.

        `ctx`: whose reads must then see these writes (with a read replica, storage/replica.py).
        """
        with self.unit(write=write, fence=reader_of(ctx) if ctx is not None and write else None) as repo:
            yield UnitOfWork(repo.s, repo)

    def record_access(self, ctx: AccessContext, action: str, rtype: str, refs: list[str], ok: bool = True,
                      patients: Iterable[str] | None = None, named: Iterable[str] = ()) -> None:
        """One access record per interaction of a person or app (the audit log splits it per patient).

        `named`: patients whose record the request itself named (a search of `patient=X`), who were
        looked at even when nothing matched.
        """
        if self.audit is not None and not ctx.trusted:
            self.audit(ctx, action, rtype, refs, ok, patients, list(named))

    def _patients_named(self, rtype: str, items: Iterable[tuple[str, str]]) -> list[str]:
        """Patients a search names through its compartment parameters (patient=, subject=Patient/..., _id)."""
        params = set(compartment_params(rtype)) | {"patient", "subject"} | ({"_id", "link"} if rtype == "Patient" else set())
        out: list[str] = []
        for key, value in items:
            name, _, modifier = key.partition(":")
            if name not in params or "." in key or modifier not in ("", "Patient"):
                continue
            for raw in value.split(","):
                ttype, tid, _ = split_reference(raw, self.base_url)
                if ttype == "Patient" and tid:
                    out.append(tid)
                elif ttype is None and "/" not in raw and raw and (name in ("patient", "_id") or modifier):
                    out.append(raw)
        return list(dict.fromkeys(out))

    @staticmethod
    def reads_audit(rtype: str | None, items: Iterable[tuple[str, str]] = ()) -> bool:
        """Whether a read may return AuditEvents (by type, across types or included): they are queued."""
        return rtype in (None, "AuditEvent") or any(
            "AuditEvent" in v for k, v in items if k.startswith(("_include", "_revinclude", "_has")))

    def reader(self, ctx: AccessContext, rtype: str | None, items: Iterable[tuple[str, str]] = ()) -> str | None:
        """Whose writes a read must see, or None: read the primary. In-process callers (ctx.trusted) read the
        primary, as they often read to decide a write (an invitation looks for the patient first); so do reads
        of AuditEvents, which only the primary has at once."""
        return None if ctx.trusted or self.reads_audit(rtype, items) else reader_of(ctx)

    def settle_audit(self, rtype: str | None, items: Iterable[tuple[str, str]] = ()) -> None:
        """Before AuditEvents are read, the queued ones are written."""
        if self.settle is not None and self.reads_audit(rtype, items):
            self.settle()

    # ---- helpers ----
    @staticmethod
    def check_type(rtype: str, fid: str | None = None) -> None:
        """404 for an unknown type, or an id no resource can have (never sent to the database)."""
        if rtype not in resource_types():
            raise NotFound(f"Unknown resource type {rtype!r}")
        if fid is not None and not is_valid_id(fid):
            raise NotFound(f"{rtype}/{fid[:80]} is not known")

    @staticmethod
    def check_changeable(rtype: str, interaction: str) -> None:
        """405 for an update or delete of an append-only type (R4 http.html#delete: refused on principle)."""
        if rtype in APPEND_ONLY:
            raise MethodNotAllowed(f"{rtype} resources are append-only: the server refuses every {interaction}",
                                   headers={"Allow": "GET, POST"})

    @staticmethod
    def _stored(row: ResourceRow) -> Stored:
        assert row.text is not None
        return Stored(row.res_type, row.fhir_id, row.version, row.last_updated, row.text)

    @staticmethod
    def _stored_text(rtype: str, fid: str, text: str) -> Stored:
        meta = json.loads(text).get("meta", {})
        return Stored(rtype, fid, int(meta.get("versionId", 1)), meta.get("lastUpdated", ""), text)

    # ---- read ----
    def read(self, ctx: AccessContext, rtype: str, fid: str) -> Stored:
        self.check_type(rtype, fid)
        if rtype == "AuditEvent":
            self.settle_audit(rtype)
        grants = ctx.require(rtype, "read")
        reader = self.reader(ctx, rtype)
        if ctx.compartment_limit(rtype, grants) is None and not ctx.filters(grants):
            # nothing to check in the database: one statement, no unit of work (on the replica: with its check)
            answered, row = (False, None) if reader is None or self.replica is None else \
                self.replica.current_text(reader, rtype, fid)
            found = row if answered else read_current_text(self.engine, rtype, fid)
            text, version, updated, pk = self._found(ctx, rtype, fid, found)
        else:
            with self.unit(reader=reader) as repo:
                text, version, updated, pk = self.visible_current(repo, ctx, rtype, fid)
        self.record_access(ctx, "read", rtype, [f"{rtype}/{fid}"])
        return Stored(rtype, fid, version, updated, text)

    def visible_current(self, repo: Repository, ctx: AccessContext, rtype: str,
                        fid: str) -> tuple[str, int, str, int]:
        """(text, version, last_updated, pk) of a resource the caller may read; 404, 410 or 403 as a read answers."""
        row = repo.current_text(rtype, fid)
        if row is not None and row[3]:  # deleted: 410 only to whoever could see what was deleted
            last = repo.last_live_version(row[4])
            self.guard.check_version(repo, ctx, rtype, fid, last.text if last else None, "read")
        found = self._found(ctx, rtype, fid, row)
        self.guard.check_read(repo, ctx, rtype, fid, found[3])
        return found

    @staticmethod
    def _found(ctx: AccessContext, rtype: str, fid: str, row: CurrentText | None) -> tuple[str, int, str, int]:
        """(text, version, last_updated, pk) of a live resource; 404 when unknown, 410 when deleted."""
        if row is None:
            raise NotFound(f"{rtype}/{fid} is not known")
        text, version, updated, deleted, pk = row
        if deleted or text is None:
            raise Gone(f"{rtype}/{fid} was deleted", headers={"ETag": f'W/"{version}"'})
        return text, version, updated, pk

    def vread(self, ctx: AccessContext, rtype: str, fid: str, vid: str) -> Stored:
        self.check_type(rtype, fid)
        if rtype == "AuditEvent":
            self.settle_audit(rtype)
        if not vid.isdigit() or len(vid) > 9:
            raise NotFound(f"Version {vid!r} of {rtype}/{fid} is not known")
        with self.unit(reader=self.reader(ctx, rtype)) as repo:
            cur = repo.current(rtype, fid)
            v = repo.version(rtype, fid, int(vid)) if cur else None
            if cur is None or v is None:
                ctx.require(rtype, "vread")
                raise NotFound(f"Version {vid} of {rtype}/{fid} is not known")
            if not cur.deleted:
                self.guard.check_read(repo, ctx, rtype, fid, cur.pk, "vread")
            shown = v if v.text is not None else repo.last_live_version(cur.pk)
            self.guard.check_version(repo, ctx, rtype, fid, shown.text if shown else None, "vread")
            if v.text is None:
                raise Gone(f"Version {vid} of {rtype}/{fid} is a deletion")
            stored = Stored(rtype, fid, v.version, v.last_updated, v.text)
        self.record_access(ctx, "read", rtype, [f"{rtype}/{fid}"])
        return stored

    # ---- write ----
    def create(self, ctx: AccessContext, rtype: str, body: Any, if_none_exist: str | None = None) -> WriteResult:
        self.check_type(rtype)
        validate_resource(body, rtype)
        with self.unit(write=True, fence=reader_of(ctx)) as repo:
            result = self.create_in(repo, ctx, body, if_none_exist)
        self.record_access(ctx, "create" if result.created else "read", rtype, [f"{rtype}/{result.stored.id}"],
                    patients=result.patients)
        return result

    def create_in(self, repo: Repository, ctx: AccessContext, body: dict[str, Any],
                  if_none_exist: str | None = None, fid: str | None = None) -> WriteResult:
        """Create inside an open unit of work (also used by transactions)."""
        rtype = body["resourceType"]
        if if_none_exist:
            found = self.match(repo, ctx, rtype, if_none_exist)
            if len(found) > 1:
                raise PreconditionFailed(f"If-None-Exist matched {len(found)} {rtype} resources")
            if found:
                return WriteResult(found[0], created=False)
        body = dict(body)
        body["id"] = fid or str(uuid.uuid4())
        if not ctx.notify:
            committed.mark_quiet(repo.s.info)
        patients = self.guard.check_write(repo, ctx, body, "create")
        rules.check(repo, body, ctx)
        row = repo.write(body, None, "POST")
        return WriteResult(self._stored(row), created=True, patients=patients)

    def update(self, ctx: AccessContext, rtype: str, fid: str, body: Any, if_match: str | None = None) -> WriteResult:
        self.check_type(rtype)
        if not ctx.trusted:
            self.check_changeable(rtype, "update")
        if not is_valid_id(fid):
            raise BadRequest(f"{fid!r} is not a valid FHIR id")
        validate_resource(body, rtype)
        with self.unit(write=True, fence=reader_of(ctx)) as repo:
            result = self.update_in(repo, ctx, rtype, fid, body, if_match)
        self.record_access(ctx, "update", rtype, [f"{rtype}/{fid}"], patients=result.patients)
        return result

    def update_in(self, repo: Repository, ctx: AccessContext, rtype: str, fid: str, body: dict[str, Any],
                  if_match: str | None = None) -> WriteResult:
        if rtype in APPEND_ONLY and not (ctx.trusted and repo.current(rtype, fid) is None):
            self.check_changeable(rtype, "update")  # only an import (in-process) may file one under its own id
        if body.get("id") != fid:
            raise BadRequest(f"The resource id ({body.get('id')!r}) must match the id in the URL ({fid!r})",
                             expression=[f"{rtype}.id"])
        if not is_valid_id(fid):
            raise BadRequest(f"{fid!r} is not a valid FHIR id")
        current = repo.current(rtype, fid)
        if current is not None and not current.deleted:
            self.guard.check_read(repo, ctx, rtype, fid, current.pk, "update")
        elif current is not None:  # re-creating a deleted resource: only whoever could see what was deleted
            last = repo.last_live_version(current.pk)
            self.guard.check_version(repo, ctx, rtype, fid, last.text if last else None, "update")
        if if_match is not None:
            expected = if_match.strip().removeprefix("W/").strip('"')
            if current is None or current.deleted or str(current.version) != expected:
                have = "none" if current is None else str(current.version)
                raise PreconditionFailed(f"If-Match {if_match} does not match the current version ({have})")
        patients = self.guard.check_write(repo, ctx, body, "update" if current is not None else "create")
        if not ctx.notify:
            committed.mark_quiet(repo.s.info)
        created = current is None or current.deleted
        rules.check(repo, body, ctx)
        row = repo.write(dict(body), current, "PUT")
        return WriteResult(self._stored(row), created=created, patients=patients)

    def conditional_update(self, ctx: AccessContext, rtype: str, query: str, body: Any) -> WriteResult:
        self.check_type(rtype)
        self.check_changeable(rtype, "update")
        validate_resource(body, rtype)
        with self.unit(write=True, fence=reader_of(ctx)) as repo:
            found = self.match(repo, ctx, rtype, query)
            if len(found) > 1:
                raise PreconditionFailed(f"The condition matched {len(found)} {rtype} resources")
            if not found:
                fid = body.get("id")
                result = self.create_in(repo, ctx, body, fid=fid) if fid is None else \
                    self.update_in(repo, ctx, rtype, fid, body)
            else:
                if body.get("id") not in (None, found[0].id):
                    raise BadRequest("The resource id does not match the resource the condition found")
                result = self.update_in(repo, ctx, rtype, found[0].id, {**body, "id": found[0].id})
        self.record_access(ctx, "update", rtype, [f"{rtype}/{result.stored.id}"], patients=result.patients)
        return result

    def delete(self, ctx: AccessContext, rtype: str, fid: str) -> bool:
        """Delete; False when it was already deleted (idempotent)."""
        self.check_type(rtype, fid)
        self.check_changeable(rtype, "delete")
        with self.unit(write=True, fence=reader_of(ctx)) as repo:
            done, patients = self.delete_in(repo, ctx, rtype, fid)
        self.record_access(ctx, "delete", rtype, [f"{rtype}/{fid}"], patients=patients)
        return done

    def delete_in(self, repo: Repository, ctx: AccessContext, rtype: str, fid: str) -> tuple[bool, set[str]]:
        """Delete inside an open unit; (False when it was already deleted, the patients it belonged to)."""
        self.check_changeable(rtype, "delete")
        current = repo.current(rtype, fid)
        if current is None:
            ctx.require(rtype, "delete")
            raise NotFound(f"{rtype}/{fid} is not known")
        if current.deleted:
            last = repo.last_live_version(current.pk)
            self.guard.check_version(repo, ctx, rtype, fid, last.text if last else None, "delete")
            return False, set()
        self.guard.check_delete(repo, ctx, rtype, fid, current.pk)
        # The audit trail records what it references (this delete too), it does not hold it: R4 http.html#delete
        referrers = repo.referrers(rtype, fid, current.pk, ignoring=sorted(APPEND_ONLY))
        if referrers:
            names = ", ".join(f"{t}/{i}" for t, i in referrers) if self.guard.names_allowed(
                ctx, rtype, "delete") else "other resources"
            raise Conflict(f"{rtype}/{fid} is referenced by {names}; delete those first")
        patients: set[str] = set()
        if not ctx.trusted and current.text is not None:  # whose record lost it, for the audit
            resource = json.loads(current.text)
            patients = self.guard.patients(repo, resource, self.extractor.rows(resource))
        repo.mark_deleted(current)
        return True, patients

    def conditional_delete(self, ctx: AccessContext, rtype: str, query: str) -> int:
        self.check_type(rtype)
        self.check_changeable(rtype, "delete")
        with self.unit(write=True, fence=reader_of(ctx)) as repo:
            found = self.match(repo, ctx, rtype, query)
            if len(found) > 1:
                raise PreconditionFailed(f"The condition matched {len(found)} {rtype} resources")
            gone = [(s.id, self.delete_in(repo, ctx, rtype, s.id)[1]) for s in found]
        for fid, patients in gone:
            self.record_access(ctx, "delete", rtype, [f"{rtype}/{fid}"], patients=patients)
        return len(found)

    # ---- search ----
    def match(self, repo: Repository, ctx: AccessContext, rtype: str, query: str) -> list[Stored]:
        """Resources matching a conditional query string (If-None-Exist, conditional update/delete)."""
        from urllib.parse import parse_qsl
        items = parse_qsl(query.split("?", 1)[-1], keep_blank_values=True)
        if not items:
            raise BadRequest("A conditional operation needs search criteria")
        req = parse(rtype, items, strict=True)
        req.count = 2
        page = self.search_page(repo, ctx, req)
        return [self._stored_text(t, i, x) for t, i, x in page.matches]

    def search_page(self, repo: Repository, ctx: AccessContext, req: SearchRequest,
                    types: list[str] | None = None, within: str | None = None) -> SearchPage:
        """Run one search page inside a unit of work, enforcing scopes, compartments and filters.

        `within`: a compartment search (R4 http.html#search, `GET [base]/Patient/[id]/[type]`) of this patient.
        """
        repo.flush_index()
        extra: list[Any] = []
        driven = False
        if req.resource_type:
            extra, driven = self.guard.search_conditions(ctx, req.resource_type)
            if within is not None:
                extra = [*extra, self.builder.compartment(frozenset([within]), req.resource_type)]
        else:  # across types (R4 http.html#search, system level): each type confined as its own search
            extra = self.guard.system_search_conditions(ctx, types)
        ex = SearchExecutor(repo.s, self.guard.builder_for(ctx), self.codec)
        page = ex.run(req, extra, types, extra_driven=driven)
        if req.includes or req.revincludes:
            add_includes(self, repo, ctx, req, page)
        return page

    def search(self, ctx: AccessContext, rtype: str | None, items: Iterable[tuple[str, str]],
               strict: bool = False, within: str | None = None) -> tuple[SearchRequest, SearchPage]:
        """A search (R4 http.html#search); `within` a patient id: only that patient's compartment (R4 compartments)."""
        if rtype is not None:
            self.check_type(rtype)
        if within is not None:
            self.check_type("Patient", within)
            if rtype is None or not compartment_params(rtype):
                raise BadRequest(f"{rtype} is not in the Patient compartment (R4 compartmentdefinition-patient)")
        items = list(items)
        self.settle_audit(rtype, items)
        req = parse(rtype, items, strict=strict)
        types = None
        if rtype is None:
            types = [t for k, v in items if k == "_type" for t in v.split(",")] or None  # type: ignore[misc]
        with self.unit(reader=self.reader(ctx, rtype, items)) as repo:
            page = self.search_page(repo, ctx, req, types, within)
        named = self._patients_named(rtype, items) if rtype else []
        self.record_access(ctx, "search", rtype or "", [f"{t}/{i}" for t, i, _ in page.matches + page.included],
                           named=[within, *named] if within is not None else named)
        return req, page

    # ---- operations ----
    def everything(self, ctx: AccessContext, req: EverythingRequest) -> EverythingPage:
        """Patient/$everything (R4 patient-operation-everything), one page."""
        return everything(self, ctx, req)

    def history(self, ctx: AccessContext, rtype: str | None, fid: str | None, since: str | None = None,
                count: str | None = None, cursor: str | None = None) -> tuple[list[ResourceVersion], str | None]:
        """Instance, type or system history (R4 http.html#history), newest first."""
        return history(self, ctx, rtype, fid, since, count, cursor)

    def process_bundle(self, ctx: AccessContext, bundle: Any) -> dict[str, Any]:
        """A transaction or batch Bundle posted to the base (R4 http.html#transaction)."""
        return BundleProcessor(self).process(ctx, bundle)

    # ---- maintenance ----
    def file_document_binaries(self) -> int:
        """Upgrade step: file the Binaries of earlier releases' documents under their patient (README, Access rules)."""
        with self.unit(write=True) as repo:
            texts = repo.live_texts("DocumentReference")
            return file_existing_binaries(repo, [json.loads(t) for t in texts])
