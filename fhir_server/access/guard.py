"""The guard: the one enforcer of an AccessContext against the store, on every path that touches data.

Every interaction asks the guard: read, vread and each history version, searches (and every inner
query of `_has` and of chained parameters), `_include`/`_revinclude`, `$everything`, Binary, the
entries of transactions and batches, conditional operations, create, update and delete.

The rules (README, "Access rules"):

1. Scopes. An interaction needs a granted scope that allows it on the type (SMART v1 or v2), else 403.
   Scope query filters (`patient/Observation.rs?category=laboratory`) narrow it further (403 outside).
2. Compartments. A caller confined to patients (a patient's app, the portal, a proxy, a `user/` scope
   of a patient or proxy) sees a resource of the Patient compartment only when it is filed in one of
   those patients' compartments, and a Binary only through its `securityContext` (a Patient, or a
   resource in the compartment); anything else answers 404, exactly as if it did not exist. Each
   stored version is judged by its own content (vread, history), so a resource that moved charts does
   not show its old owner's versions.
3. Writes of confined callers keep every compartment reference (subject, patient, performer, author,
   sender, recipient, ...) among the caller's patients and name at least one; they may not create,
   change or delete the practice's shared data (Practitioner, Organization, Location, Medication and
   every other type outside the compartment), a Binary whose securityContext is not theirs, or the
   Patient resources themselves beyond updating their own.
4. Errors name only what the caller sent or may see.

Unconfined callers (practice staff, backend services with `system/` scopes, trusted in-process code)
are bound by rule 1 only. Searches across types (`GET /fhir?_type=...`) confine each type as its own search
would; the history of the whole system shows only callers unconfined for every type they may read.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select

from ..errors import Forbidden, NotFound
from ..r4.tables import compartment_params, resource_types
from ..search.conditions import ConditionBuilder
from ..search.rows import ROW
from ..storage.indexing import Extractor, compartment_rows, split_reference
from ..storage.models import CompartmentIndex
from ..storage.repository import Repository
from .context import AccessContext


class Guard:
    """Decides, for one AccessContext, what it may read, search and write; raises NotFound or Forbidden."""

    def __init__(self, builder: ConditionBuilder, extractor: Extractor) -> None:
        self.builder = builder
        self.extractor = extractor
        self.base_url = builder.base_url

    # ---- current resources ----
    def check_read(self, repo: Repository, ctx: AccessContext, rtype: str, fid: str, pk: int,
                   interaction: str = "read") -> None:
        """Rules 1 and 2 for the current version of one resource."""
        grants = ctx.require(rtype, interaction)
        limit = ctx.compartment_limit(rtype, grants)
        if limit is not None and not self._filed_in(repo, rtype, fid, pk, limit):
            raise NotFound(f"{rtype}/{fid} is not known")  # never reveal that another patient's data exists
        filters = ctx.filters(grants)
        if filters and not repo.pks_where([pk], self.builder.scope_filters(rtype, filters)):
            raise Forbidden(f"The granted scopes do not cover this {rtype}")

    def _filed_in(self, repo: Repository, rtype: str, fid: str, pk: int, limit: frozenset[str]) -> bool:
        if rtype == "Patient":
            return fid in limit
        if repo.in_compartment(pk, limit):
            return True
        if rtype != "Binary":
            return False
        row = repo.current_text("Binary", fid)
        return row is not None and row[0] is not None and bool(
            self._context_patients(repo, json.loads(row[0])) & limit)

    def readable(self, repo: Repository, ctx: AccessContext, items: Sequence[tuple[int, str, str]],
                 member_of: str | None = None) -> set[int]:
        """The pks among (pk, type, id) the caller may read, with a few SELECTs per type instead of one per row.

        `member_of`: every item came out of this patient's compartment (already checked readable), so
        the compartment needs no second look.
        """
        if ctx.trusted:
            return {pk for pk, _, _ in items}
        by_type: dict[str, list[tuple[int, str]]] = {}
        for pk, t, i in items:
            by_type.setdefault(t, []).append((pk, i))
        out: set[int] = set()
        for rtype, rows in by_type.items():
            grants = ctx.grants_for(rtype, "r")
            if not grants:
                continue
            pks = [pk for pk, _ in rows]
            limit = ctx.compartment_limit(rtype, grants)
            if limit is not None and not (member_of is not None and member_of in limit):
                if rtype == "Patient":
                    pks = [pk for pk, i in rows if i in limit]
                else:
                    filed = repo.in_compartments(pks, limit)
                    pks = [pk for pk, i in rows if pk in filed or (
                        rtype == "Binary" and self._filed_in(repo, rtype, i, pk, limit))]
            filters = ctx.filters(grants)
            if filters and pks:
                kept = repo.pks_where(pks, self.builder.scope_filters(rtype, filters))
                pks = [pk for pk in pks if pk in kept]
            out.update(pks)
        return out

    # ---- stored versions ----
    def check_version(self, repo: Repository, ctx: AccessContext, rtype: str, fid: str, text: str | None,
                      interaction: str) -> None:
        """Rules 1 and 2 for one stored version, judged by its own content (a deletion by the version before)."""
        grants = ctx.require(rtype, interaction)
        limit = ctx.compartment_limit(rtype, grants)
        filters = ctx.filters(grants)
        if limit is None and not filters:
            return
        if text is None:
            raise NotFound(f"{rtype}/{fid} is not known")
        resource = json.loads(text)
        if rtype == "Binary" and not resource.get("securityContext"):
            # a version from before the practice filed the Binary was nobody's: it is filed as it is now
            current = repo.current_text(rtype, fid)
            resource = json.loads(current[0]) if current is not None and current[0] else resource
        rows = self.extractor.rows(resource)
        if limit is not None and not (self.patients(repo, resource, rows) & limit):
            raise NotFound(f"{rtype}/{fid} is not known")
        if filters and not _filters_hold(rows, filters):
            raise Forbidden(f"The granted scopes do not cover this version of {rtype}/{fid}")

    # ---- writes ----
    def check_write(self, repo: Repository, ctx: AccessContext, resource: dict[str, Any],
                    interaction: str) -> set[str]:
        """Rules 1 and 3 for a resource about to be stored; returns the patients it belongs to (for the audit)."""
        rtype = resource["resourceType"]
        grants = ctx.require(rtype, interaction)
        if ctx.trusted:
            return set()  # in-process callers are not audited, so nobody needs the patients (imports stay fast)
        patients = self.patients(repo, resource, self.extractor.rows(resource))
        confined = ctx.confinement(grants)
        if confined is None:
            return patients
        if rtype == "Patient":
            if resource.get("id") not in confined:
                raise Forbidden("A patient's app can change only the Patient record in context")
            if not patients <= confined:
                raise Forbidden("A Patient record can link only to the patients in context")
        elif rtype == "Binary":
            if not patients or not patients <= confined:
                raise Forbidden("A Binary written for a patient needs a securityContext naming the patient in context")
        elif not compartment_params(rtype):
            raise Forbidden(f"{rtype} is the practice's shared data; this access cannot {interaction} it")
        elif not patients:
            raise Forbidden(f"The {rtype} must belong to the patient in context")
        elif not patients <= confined:
            raise Forbidden(f"Every patient the {rtype} refers to must be the patient in context")
        return patients

    def check_delete(self, repo: Repository, ctx: AccessContext, rtype: str, fid: str, pk: int) -> None:
        """Rules 1-3 for a delete: the caller must see the resource and be allowed to remove that kind."""
        self.check_read(repo, ctx, rtype, fid, pk, "delete")
        if ctx.confinement(ctx.require(rtype, "delete")) is None:
            return
        if rtype == "Patient":
            raise Forbidden("A patient's record is closed by the practice, not deleted through an app")
        if rtype != "Binary" and not compartment_params(rtype):
            raise Forbidden(f"{rtype} is the practice's shared data; this access cannot delete it")

    def names_allowed(self, ctx: AccessContext, rtype: str, interaction: str) -> bool:
        """Whether error messages may name other resources (only to unconfined callers)."""
        return ctx.trusted or ctx.confinement(ctx.require(rtype, interaction)) is None

    # ---- searches ----
    def search_conditions(self, ctx: AccessContext, rtype: str) -> tuple[list[ColumnElement[bool]], bool]:
        """Conditions confining a search of `rtype`, and whether the compartment drives it (by key)."""
        grants = ctx.require(rtype, "search")
        extra = []
        limit = ctx.compartment_limit(rtype, grants)
        if limit is not None:
            extra.append(self.builder.compartment(limit, rtype))
        filters = ctx.filters(grants)
        if filters:
            extra.append(self.builder.scope_filters(rtype, filters))
        return extra, limit is not None

    def system_search_conditions(self, ctx: AccessContext, types: list[str] | None) -> list[ColumnElement[bool]]:
        """Rules 1 and 2 for a search across types: each type as its own search (403 for a named type the
        scopes refuse; without `_type`, the types the scopes allow)."""
        if ctx.trusted:
            return []
        open_types: list[str] = []
        confined: dict[frozenset[str], list[str]] = {}
        branches: list[ColumnElement[bool]] = []
        for rtype in types if types is not None else sorted(resource_types()):
            grants = ctx.grants_for(rtype, "s")
            if not grants:
                if types is not None:
                    raise Forbidden(f"The granted scopes do not allow search on {rtype}", expression=["_type"])
                continue
            limit, filters = ctx.compartment_limit(rtype, grants), ctx.filters(grants)
            if filters:
                conds, _ = self.search_conditions(ctx, rtype)
                branches.append(and_(ROW.res_type == rtype, *conds))
            elif limit is None:
                open_types.append(rtype)
            else:
                confined.setdefault(limit, []).append(rtype)
        if types is None and not confined and not branches and len(open_types) == len(resource_types()):
            return []  # everything, unconfined
        if open_types:
            branches.append(ROW.res_type.in_(open_types))
        for limit, rtypes in confined.items():
            branches.append(and_(ROW.res_type.in_(rtypes), self.builder.compartment(limit)))
        if not branches:
            raise Forbidden("The granted scopes do not allow searching any resource type")
        return [or_(*branches)]

    @staticmethod
    def system_history_types(ctx: AccessContext) -> list[str] | None:
        """The types whose versions the history of the whole system shows (None: all); 403 for callers
        confined to patients, who read history per resource (each version judged as `check_version` does)."""
        if ctx.trusted:
            return None
        readable = [t for t in sorted(resource_types()) if ctx.grants_for(t, "r")]
        if not readable or any(ctx.confinement(ctx.grants_for(t, "r")) is not None for t in readable):
            raise Forbidden("System history needs read access not confined to patients (system/ scopes or the "
                            "practice's staff); read a resource's own history instead")
        return None if len(readable) == len(resource_types()) else readable

    def builder_for(self, ctx: AccessContext) -> ConditionBuilder:
        """A condition builder whose inner queries (`_has`, chains) are confined like the search itself."""
        if ctx.trusted:
            return self.builder
        return self.builder.confined(lambda rtype, row: self._inner(ctx, rtype, row))

    def _inner(self, ctx: AccessContext, rtype: str, row: Any) -> list[ColumnElement[bool]]:
        """What an inner query over `rtype` (rows `row`) may see: the caller's own search of that type."""
        grants = ctx.require(rtype, "search")
        conds: list[ColumnElement[bool]] = []
        limit = ctx.compartment_limit(rtype, grants)
        if limit is not None:
            comp = CompartmentIndex.__table__.alias().c  # its own alias: never correlated with the outer query
            conds.append(row.pk.in_(select(comp.res_pk).where(comp.patient_id.in_(sorted(limit)),
                                                              comp.res_type == rtype)))
        filters = ctx.filters(grants)
        if filters:
            conds.append(self.builder.scope_filters(rtype, filters, row=row))
        return conds

    # ---- compartment membership ----
    def patients(self, repo: Repository, resource: dict[str, Any], rows: dict[str, list[dict[str, Any]]]) -> set[str]:
        """The patients whose compartment a resource (as written) belongs to."""
        if resource.get("resourceType") == "Binary":
            return self._context_patients(repo, resource)
        return {r["patient_id"] for r in compartment_rows(resource, rows)}

    def _context_patients(self, repo: Repository, binary: dict[str, Any]) -> set[str]:
        """A Binary's patients: its securityContext's, a Patient or a resource filed under patients."""
        ref = (binary.get("securityContext") or {}).get("reference")
        ttype, tid, _ = split_reference(ref, self.base_url) if isinstance(ref, str) else (None, None, None)
        if not ttype or not tid:
            return set()
        if ttype == "Patient":
            return {tid}
        if ttype == "Binary":
            return set()
        return repo.patients_of([(ttype, tid)]).get((ttype, tid), set())


def _filters_hold(rows: dict[str, list[dict[str, Any]]], filters: list[tuple[tuple[str, str], ...]]) -> bool:
    """Scope filters on a version's index rows: token filters are evaluated; any other kind is refused."""
    return any(all(_token_holds(rows, key, value) for key, value in alt) for alt in filters)


def _token_holds(rows: dict[str, list[dict[str, Any]]], key: str, value: str) -> bool:
    wanted = [v for v in value.split(",") if v]
    for r in rows.get("token", []):
        if r["param"] != key:
            continue
        for v in wanted:
            system, bar, code = v.rpartition("|")
            if (not bar and r["code"] == v) or (bar and r["code"] == code and (r["system"] or "") == system):
                return True
    return False

