"""The FHIR service layer: every interaction, with access enforcement, for HTTP and in-process callers."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from . import rules
from .access.context import AccessContext
from .errors import BadRequest, Conflict, Forbidden, Gone, NotFound, PreconditionFailed
from .r4.validation import is_valid_id, validate_resource
from .rules.documents import file_existing_binaries
from .search.executor import SearchExecutor, SearchPage
from .search.parse import SearchRequest, parse
from .service_base import ServiceBase, Stored, WriteResult
from .storage.repository import CurrentText, Repository, read_current_text


class FhirService(ServiceBase):
    """Entry point for all FHIR operations; one instance per app, one DB transaction per call."""

    # ---- read ----
    def read(self, ctx: AccessContext, rtype: str, fid: str) -> Stored:
        self._check_type(rtype, fid)
        if rtype == "AuditEvent":
            self.settle_audit(rtype)
        grants = ctx.require(rtype, "read")
        if ctx.compartment_limit(rtype, grants) is None and not ctx.filters(grants):
            # nothing to check in the database: one statement, no unit of work
            text, version, updated, pk = self._found(ctx, rtype, fid, read_current_text(self.engine, rtype, fid))
        else:
            with self.unit() as repo:
                row = repo.current_text(rtype, fid)
                if row is not None and row[3]:  # deleted: 410 only to whoever could see what was deleted
                    last = repo.last_live_version(row[4])
                    self.guard.check_version(repo, ctx, rtype, fid, last.text if last else None, "read")
                text, version, updated, pk = self._found(ctx, rtype, fid, row)
                self.guard.check_read(repo, ctx, rtype, fid, pk)
        self._audit(ctx, "read", rtype, [f"{rtype}/{fid}"])
        return Stored(rtype, fid, version, updated, text)

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
        self._check_type(rtype, fid)
        if rtype == "AuditEvent":
            self.settle_audit(rtype)
        if not vid.isdigit() or len(vid) > 9:
            raise NotFound(f"Version {vid!r} of {rtype}/{fid} is not known")
        with self.unit() as repo:
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
        self._audit(ctx, "read", rtype, [f"{rtype}/{fid}"])
        return stored

    # ---- write ----
    def create(self, ctx: AccessContext, rtype: str, body: Any, if_none_exist: str | None = None) -> WriteResult:
        self._check_type(rtype)
        validate_resource(body, rtype)
        with self.unit(write=True) as repo:
            result = self.create_in(repo, ctx, body, if_none_exist)
        self._audit(ctx, "create" if result.created else "read", rtype, [f"{rtype}/{result.stored.id}"],
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
        patients = self.guard.check_write(repo, ctx, body, "create")
        rules.check(repo, body, ctx)
        row = repo.write(body, None, "POST")
        return WriteResult(self._stored(row), created=True, patients=patients)

    def update(self, ctx: AccessContext, rtype: str, fid: str, body: Any, if_match: str | None = None) -> WriteResult:
        self._check_type(rtype)
        if not is_valid_id(fid):
            raise BadRequest(f"{fid!r} is not a valid FHIR id")
        validate_resource(body, rtype)
        with self.unit(write=True) as repo:
            result = self.update_in(repo, ctx, rtype, fid, body, if_match)
        self._audit(ctx, "update", rtype, [f"{rtype}/{fid}"], patients=result.patients)
        return result

    def update_in(self, repo: Repository, ctx: AccessContext, rtype: str, fid: str, body: dict[str, Any],
                  if_match: str | None = None) -> WriteResult:
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
        created = current is None or current.deleted
        rules.check(repo, body, ctx)
        row = repo.write(dict(body), current, "PUT")
        return WriteResult(self._stored(row), created=created, patients=patients)

    def conditional_update(self, ctx: AccessContext, rtype: str, query: str, body: Any) -> WriteResult:
        self._check_type(rtype)
        validate_resource(body, rtype)
        with self.unit(write=True) as repo:
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
        self._audit(ctx, "update", rtype, [f"{rtype}/{result.stored.id}"], patients=result.patients)
        return result

    def delete(self, ctx: AccessContext, rtype: str, fid: str) -> bool:
        """Delete; False when it was already deleted (idempotent)."""
        self._check_type(rtype, fid)
        with self.unit(write=True) as repo:
            done, patients = self.delete_in(repo, ctx, rtype, fid)
        self._audit(ctx, "delete", rtype, [f"{rtype}/{fid}"], patients=patients)
        return done

    def delete_in(self, repo: Repository, ctx: AccessContext, rtype: str, fid: str) -> tuple[bool, set[str]]:
        """Delete inside an open unit; (False when it was already deleted, the patients it belonged to)."""
        current = repo.current(rtype, fid)
        if current is None:
            ctx.require(rtype, "delete")
            raise NotFound(f"{rtype}/{fid} is not known")
        if current.deleted:
            last = repo.last_live_version(current.pk)
            self.guard.check_version(repo, ctx, rtype, fid, last.text if last else None, "delete")
            return False, set()
        self.guard.check_delete(repo, ctx, rtype, fid, current.pk)
        referrers = repo.referrers(rtype, fid, current.pk)
        if referrers:
            names = ", ".join(f"{t}/{i}" for t, i in referrers) if self.guard.names_allowed(
                ctx, rtype, "delete") else "other resources"
            raise Conflict(f"{rtype}/{fid} is referenced by {names}; delete those first")
        assert current.text is not None
        resource = json.loads(current.text)
        patients = self.guard.patients(repo, resource, self.extractor.rows(resource))
        repo.mark_deleted(current)
        return True, patients

    def conditional_delete(self, ctx: AccessContext, rtype: str, query: str) -> int:
        self._check_type(rtype)
        with self.unit(write=True) as repo:
            found = self.match(repo, ctx, rtype, query)
            if len(found) > 1:
                raise PreconditionFailed(f"The condition matched {len(found)} {rtype} resources")
            gone = [(s.id, self.delete_in(repo, ctx, rtype, s.id)[1]) for s in found]
        for fid, patients in gone:
            self._audit(ctx, "delete", rtype, [f"{rtype}/{fid}"], patients=patients)
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
                    types: list[str] | None = None) -> SearchPage:
        """Run one search page inside a unit of work, enforcing scopes, compartments and filters."""
        repo.flush_index()
        extra: list[Any] = []
        driven = False
        if req.resource_type:
            extra, driven = self.guard.search_conditions(ctx, req.resource_type)
        elif not ctx.trusted:
            raise Forbidden("Searching across all resource types needs system access")
        ex = SearchExecutor(repo.s, self.guard.builder_for(ctx), self.codec)
        page = ex.run(req, extra, types, extra_driven=driven)
        if req.includes or req.revincludes:
            from .search.includes import add_includes
            add_includes(self, repo, ctx, ex, req, page)
        return page

    def search(self, ctx: AccessContext, rtype: str | None, items: Iterable[tuple[str, str]],
               strict: bool = False) -> tuple[SearchRequest, SearchPage]:
        if rtype is not None:
            self._check_type(rtype)
        items = list(items)
        self.settle_audit(rtype, items)
        req = parse(rtype, items, strict=strict)
        types = None
        if rtype is None:
            types = [t for k, v in items if k == "_type" for t in v.split(",")] or None  # type: ignore[misc]
        with self.unit() as repo:
            page = self.search_page(repo, ctx, req, types)
        if rtype:
            self._audit(ctx, "search", rtype, [f"{t}/{i}" for t, i, _ in page.matches + page.included])
        return req, page

    # ---- maintenance ----
    def file_document_binaries(self) -> int:
        """Upgrade step: file the Binaries of earlier releases' documents under their patient (README, Access rules)."""
        with self.unit(write=True) as repo:
            texts = repo.live_texts("DocumentReference")
            return file_existing_binaries(repo, [json.loads(t) for t in texts])
