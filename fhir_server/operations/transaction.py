"""Bundles POSTed to the base: `transaction` (all or nothing) and `batch` (each entry alone)."""
from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..access.context import AccessContext
from ..errors import BadRequest, FhirError, NotFound, PreconditionFailed
from ..r4.tables import resource_types
from ..r4.validation import validate_resource

if TYPE_CHECKING:
    from ..service import FhirService
    from ..storage.repository import Repository
    from ..stored import WriteResult

Access = tuple[str, str, list[str], "set[str] | None"]  # (action, type, resources, their patients if known)
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def _split_url(url: str, base: str) -> tuple[str, str | None, str | None]:
    """'Patient/1' -> (Patient, 1, None); 'Patient?x=y' -> (Patient, None, 'x=y')."""
    if url.startswith(base + "/"):
        url = url[len(base) + 1:]
    path, _, query = url.partition("?")
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in resource_types():
        raise BadRequest(f"Entry request url {url!r} does not name a resource type")
    return parts[0], parts[1] if len(parts) > 1 else None, query or None


_STRING_FIELDS = ("method", "url", "ifNoneExist", "ifMatch", "ifNoneMatch", "ifModifiedSince")


def _check_shapes(entries: list[Any], transaction: bool) -> None:
    """400 for entries whose fields are not the JSON strings R4 defines, and (transactions) for a fullUrl that
    two entries share (R4 bdl-7: unique, unless the versionIds differ); nothing is stored."""
    seen: dict[tuple[str, Any], int] = {}
    for n, e in enumerate(entries):
        if not isinstance(e, dict):
            continue  # refused entry by entry, as before (a batch answers the others)
        full = e.get("fullUrl")
        if full is not None and not isinstance(full, str):
            raise BadRequest(f"Bundle.entry[{n}].fullUrl must be a string (a uri), not {type(full).__name__}",
                             expression=[f"Bundle.entry[{n}].fullUrl"])
        req = e.get("request")
        req = req if isinstance(req, dict) else {}
        for name in _STRING_FIELDS:
            if name in req and not isinstance(req[name], str):
                raise BadRequest(f"Bundle.entry[{n}].request.{name} must be a string, not {type(req[name]).__name__}",
                                 expression=[f"Bundle.entry[{n}].request.{name}"])
        if transaction and full:
            res = e.get("resource")
            meta = res.get("meta") if isinstance(res, dict) else None
            version = meta.get("versionId") if isinstance(meta, dict) else None
            key = (full, json.dumps(version))
            if key in seen:
                raise BadRequest(f"Bundle.entry[{n}].fullUrl {full[:200]!r} is also Bundle.entry[{seen[key]}]'s; "
                                 "each entry of a transaction needs its own fullUrl",
                                 expression=[f"Bundle.entry[{n}].fullUrl"])
            seen[key] = n


def _rewrite(node: Any, resolve: Any) -> None:
    """Replace every Reference.reference in place using `resolve` (urn:uuid and conditional refs)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                node[k] = resolve(v)
            else:
                _rewrite(v, resolve)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, resolve)


def _response(status: str, result: "WriteResult | None" = None, base: str = "") -> dict[str, Any]:
    resp: dict[str, Any] = {"status": status}
    if result is not None:
        st = result.stored
        resp.update({"location": f"{st.resource_type}/{st.id}/_history/{st.version}", "etag": st.etag,
                     "lastModified": st.last_updated})
    return resp


class BundleProcessor:
    """Runs transaction and batch Bundles through the service's in-unit operations."""

    def __init__(self, svc: "FhirService") -> None:
        self.svc = svc
        self.base = svc.base_url

    def process(self, ctx: AccessContext, bundle: Any) -> dict[str, Any]:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise BadRequest("POST to the base needs a Bundle of type transaction or batch")
        btype = bundle.get("type")
        if btype not in ("transaction", "batch"):
            raise BadRequest(f"Bundle.type must be transaction or batch, not {btype!r}", expression=["Bundle.type"])
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise BadRequest("Bundle.entry must be an array")
        _check_shapes(entries, btype == "transaction")
        if btype == "batch":
            return self._batch(ctx, entries)
        return self._transaction(ctx, entries)

    def _transaction(self, ctx: AccessContext, entries: list[Any]) -> dict[str, Any]:
        plan = []
        ids: dict[str, str] = {}
        for n, e in enumerate(entries):
            req = e.get("request") if isinstance(e, dict) else None
            if not isinstance(req, dict) or req.get("method") not in _ORDER or not isinstance(req.get("url"), str):
                raise BadRequest(f"Bundle.entry[{n}].request needs a method and url", expression=[f"Bundle.entry[{n}]"])
            rtype, fid, query = _split_url(req["url"], self.base)
            res = e.get("resource")
            if req["method"] in ("POST", "PUT"):
                if not isinstance(res, dict):
                    raise BadRequest(f"Bundle.entry[{n}] needs a resource", expression=[f"Bundle.entry[{n}].resource"])
                try:
                    validate_resource(res, rtype)
                except FhirError as err:
                    for issue in (err.issues or []):
                        issue["expression"] = [f"Bundle.entry[{n}].resource." + x.split(".", 1)[-1]
                                               for x in issue.get("expression", [])]
                    raise self._in_entry(err, n, req) from None
                res = json.loads(json.dumps(res))
                if req["method"] == "POST" and e.get("fullUrl"):
                    ids[e["fullUrl"]] = f"{rtype}/{str(uuid.uuid4())}"
                elif req["method"] == "PUT" and fid and e.get("fullUrl"):
                    ids[e["fullUrl"]] = f"{rtype}/{fid}"
            plan.append((n, req, rtype, fid, query, res, e.get("fullUrl")))
        results: dict[int, dict[str, Any]] = {}
        log: list[Access] = []
        with self.svc.unit(write=True) as repo:
            cache: dict[str, str] = {}

            def resolve(ref: str) -> str:
                if ref in ids:
                    return ids[ref]
                if "?" in ref and not ref.startswith("#") and "://" not in ref:
                    if ref not in cache:
                        t, _, q = ref.partition("?")
                        found = self.svc.match(repo, ctx, t, q)
                        if len(found) != 1:
                            raise PreconditionFailed(f"Conditional reference {ref!r} matched {len(found)} resources")
                        cache[ref] = f"{t}/{found[0].id}"
                    return cache[ref]
                if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
                    raise NotFound(f"Reference {ref!r} names no entry of this transaction")
                return ref

            for n, req, rtype, _fid, query, res, full in plan:
                # Conditional creates and updates name their target before any entry is rewritten, so
                # urn:uuid references to them (from earlier entries too) point at the resource they hit.
                try:
                    if full and req["method"] == "POST" and req.get("ifNoneExist"):
                        found = self.svc.match(repo, ctx, rtype, req["ifNoneExist"])
                        if len(found) == 1:
                            ids[full] = f"{rtype}/{found[0].id}"
                    elif full and req["method"] == "PUT" and query:
                        found = self.svc.match(repo, ctx, rtype, query)
                        if len(found) > 1:
                            raise PreconditionFailed(f"The condition matched {len(found)} resources")
                        ids[full] = f"{rtype}/{found[0].id if found else (res.get('id') or uuid.uuid4())}"
                except FhirError as err:
                    raise self._in_entry(err, n, req) from None
            for n, req, rtype, fid, query, res, full in sorted(plan, key=lambda p: (_ORDER[p[1]["method"]], p[0])):
                try:
                    results[n] = self._one(repo, ctx, req, rtype, fid, query, res, full, ids, resolve, log)
                except FhirError as err:
                    raise self._in_entry(err, n, req) from None
        self._audit(ctx, log)
        return self._reply("transaction-response", [results[n] for n in range(len(entries))])

    @staticmethod
    def _in_entry(err: FhirError, n: int, req: dict[str, Any]) -> FhirError:
        """The error with the failing entry named in its diagnostics."""
        err.diagnostics = f"Bundle.entry[{n}] ({req['method']} {req['url']}): {err.diagnostics}"
        if err.issues:
            err.issues[0]["diagnostics"] = err.diagnostics
        return err

    def _one(self, repo: "Repository", ctx: AccessContext, req: dict[str, Any], rtype: str, fid: str | None,
             query: str | None, res: dict[str, Any] | None, full: str | None, ids: dict[str, str],
             resolve: Any, log: list[Access]) -> dict[str, Any]:
        """One entry inside the open unit; what it touched is added to `log` for the audit after commit."""
        method = req["method"]
        if res is not None:
            _rewrite(res, resolve)
        if method == "POST":
            assert res is not None
            new_id = ids[full].split("/", 1)[1] if full in ids else None
            result = self.svc.create_in(repo, ctx, res, req.get("ifNoneExist"), fid=new_id)
            if full and not result.created:
                ids[full] = f"{rtype}/{result.stored.id}"
            log.append(("create" if result.created else "read", rtype, [f"{rtype}/{result.stored.id}"],
                        result.patients))
            return {"response": _response("201 Created" if result.created else "200 OK", result)}
        if method == "PUT":
            assert res is not None
            if query:
                if full in ids:
                    target = ids[full].split("/", 1)[1]
                else:
                    found = self.svc.match(repo, ctx, rtype, query)
                    if len(found) > 1:
                        raise PreconditionFailed(f"The condition matched {len(found)} resources")
                    target = found[0].id if found else (res.get("id") or str(uuid.uuid4()))
                res["id"] = target
                fid = target
            if fid is None:
                raise BadRequest("PUT needs an id or a condition in its url")
            result = self.svc.update_in(repo, ctx, rtype, fid, res, req.get("ifMatch"))
            log.append(("update", rtype, [f"{rtype}/{fid}"], result.patients))
            return {"response": _response("201 Created" if result.created else "200 OK", result)}
        if method == "DELETE":
            if query:
                found = self.svc.match(repo, ctx, rtype, query)
                if len(found) > 1:
                    raise PreconditionFailed(f"The condition matched {len(found)} resources")
                targets = [s.id for s in found]
            else:
                targets = [fid] if fid else []
            for target in targets:
                log.append(("delete", rtype, [f"{rtype}/{target}"], self.svc.delete_in(repo, ctx, rtype, target)[1]))
            return {"response": {"status": "204 No Content"}}
        if method == "PATCH":
            raise BadRequest("PATCH entries are not supported")
        return self._get(repo, ctx, rtype, fid, query, log)

    def _get(self, repo: "Repository", ctx: AccessContext, rtype: str, fid: str | None,
             query: str | None, log: list[Access]) -> dict[str, Any]:
        if fid:
            row = repo.current_text(rtype, fid)
            if row is None or row[3]:
                ctx.require(rtype, "read")
                raise NotFound(f"{rtype}/{fid} is not known")
            self.svc.guard.check_read(repo, ctx, rtype, fid, row[4])
            log.append(("read", rtype, [f"{rtype}/{fid}"], None))
            return {"resource": json.loads(row[0] or "{}"), "response": {"status": "200 OK", "etag": f'W/"{row[1]}"'}}
        from urllib.parse import parse_qsl

        from ..search.parse import parse
        page = self.svc.search_page(repo, ctx, parse(rtype, parse_qsl(query or "")))
        log.append(("search", rtype, [f"{t}/{i}" for t, i, _ in page.matches + page.included], None))
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": page.total,
                  "entry": [{"fullUrl": f"{self.base}/{t}/{i}", "resource": json.loads(x)} for t, i, x in page.matches]}
        if bundle["total"] is None:
            del bundle["total"]
        return {"resource": bundle, "response": {"status": "200 OK"}}

    def _batch(self, ctx: AccessContext, entries: list[Any]) -> dict[str, Any]:
        out = []
        for n, e in enumerate(entries):
            try:
                req = e.get("request") if isinstance(e, dict) else None
                if not isinstance(req, dict) or req.get("method") not in _ORDER or not isinstance(req.get("url"), str):
                    raise BadRequest(f"Bundle.entry[{n}].request needs a method and url")
                rtype, fid, query = _split_url(req["url"], self.base)
                res = e.get("resource")
                if req["method"] in ("POST", "PUT"):
                    validate_resource(res, rtype)
                    res = json.loads(json.dumps(res))
                log: list[Access] = []
                with self.svc.unit(write=req['method'] != 'GET') as repo:
                    out.append(self._one(repo, ctx, req, rtype, fid, query, res, None, {}, lambda r: r, log))
                self._audit(ctx, log)
            except FhirError as err:
                out.append({"response": {"status": f"{err.status} {type(err).__name__}",
                                         "outcome": err.to_operation_outcome()}})
        return self._reply("batch-response", out)

    def _audit(self, ctx: AccessContext, log: list[Access]) -> None:
        """Each committed entry is audited like the same interaction on its own."""
        for action, rtype, refs, patients in log:
            self.svc.record_access(ctx, action, rtype, refs, patients=patients)

    @staticmethod
    def _reply(btype: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": btype, "entry": entries}


def base_path(url: str) -> str:
    return urlsplit(url).path
