"""Queries and writes of the FHIR store: versions, current rows and their index rows."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam, delete, func, insert, or_, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from ..committed import note_write
from ..r4.dates import instant_of, now_instant
from .hot_select import HotSelect
from .indexing import Extractor, compartment_rows
from .models import INDEX_TABLES, CompartmentIndex, ReferenceIndex, ResourceRow, ResourceVersion

_BUFFER_KEY = "fhir_index_buffer"
_VERSIONS_KEY = "fhir_version_buffer"
_PKS_KEY = "fhir_pk_block"
_PK_BLOCK_MAX = 256
_PG_NEXTVALS = sql_text("SELECT nextval(pg_get_serial_sequence('fhir_resource', 'pk')) FROM generate_series(1, :n)")


# Built once: building a select() and its cache key per read costs about a fifth of a read by id.
_CURRENT_TEXT = select(ResourceRow.text, ResourceRow.version, ResourceRow.last_updated, ResourceRow.deleted,
                       ResourceRow.pk).where(ResourceRow.res_type == bindparam("t"), ResourceRow.fhir_id == bindparam("i"))
CurrentText = tuple[str | None, int, str, bool, int]


_HOT_CURRENT_TEXT = HotSelect(_CURRENT_TEXT)


def read_current_text(engine: Engine, rtype: str, fhir_id: str) -> CurrentText | None:
    """current_text in one statement outside any unit of work."""
    row = _HOT_CURRENT_TEXT.first(engine, {"t": rtype, "i": fhir_id})
    return None if row is None else (row[0], row[1], row[2], bool(row[3]), row[4])


def dumps(resource: dict[str, Any]) -> str:
    """The compact JSON text stored and served."""
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class CompartmentFilter:
    """Which members of a patient's compartment: types, clinical dates, changed since."""

    patient_id: str
    members: tuple[str, ...]
    types: tuple[str, ...] | None = None
    low: int | None = None  # clinical date bounds (ms)
    high: int | None = None
    since: int | None = None  # lastUpdated (ms)

    def conditions(self, typed: bool) -> list[Any]:
        c = CompartmentIndex
        conds: list[Any] = [c.patient_id == self.patient_id, ResourceRow.deleted.is_(False),
                            c.res_type.in_(self.members)]
        if self.low is not None:
            conds.append(or_(c.date_high.is_(None), c.date_high >= self.low))
        if self.high is not None:
            conds.append(or_(c.date_low.is_(None), c.date_low <= self.high))
        if self.since is not None:
            conds.append(ResourceRow.updated_ms >= self.since)
        if typed and self.types:
            conds.append(c.res_type.in_(self.types))
        return conds


class Repository:
    """Storage operations inside one SQLAlchemy session (the caller owns the transaction)."""

    def __init__(self, session: Session, extractor: Extractor) -> None:
        self.s = session
        self.extractor = extractor

    def unit_state(self, key: str) -> dict[str, Any]:
        """A dictionary that lives as long as this unit of work (rules that span a transaction's entries)."""
        return self.s.info.setdefault(key, {})  # type: ignore[no-any-return]

    # ---- reads ----
    def current(self, rtype: str, fhir_id: str) -> ResourceRow | None:
        return self.s.execute(select(ResourceRow).where(ResourceRow.res_type == rtype,
                                                        ResourceRow.fhir_id == fhir_id)).scalar_one_or_none()

    def current_text(self, rtype: str, fhir_id: str) -> CurrentText | None:
        """(text, version, last_updated, deleted, pk) of the current version, without ORM objects."""
        row = self.s.execute(_CURRENT_TEXT, {"t": rtype, "i": fhir_id}).first()
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])

    def version(self, rtype: str, fhir_id: str, version: int) -> ResourceVersion | None:
        self.flush_index()  # version rows of this unit of work are buffered until then
        return self.s.execute(select(ResourceVersion).where(
            ResourceVersion.res_type == rtype, ResourceVersion.fhir_id == fhir_id,
            ResourceVersion.version == version)).scalar_one_or_none()

    def texts_by_pk(self, pks: Sequence[int]) -> dict[int, tuple[str, str, str]]:
        """pk -> (type, id, text) for live resources."""
        out: dict[int, tuple[str, str, str]] = {}
        for i in range(0, len(pks), 500):
            chunk = list(pks[i:i + 500])
            for pk, rtype, fid, text in self.s.execute(
                    select(ResourceRow.pk, ResourceRow.res_type, ResourceRow.fhir_id, ResourceRow.text)
                    .where(ResourceRow.pk.in_(chunk), ResourceRow.deleted.is_(False))):
                out[pk] = (rtype, fid, text or "")
        return out

    def texts_beside(self, pk: int, rtype: str, mentioning: str) -> list[str]:
        """Texts of live `rtype` resources in the compartments `pk` is in whose text contains `mentioning`."""
        self.flush_index()
        patients = select(CompartmentIndex.patient_id).where(CompartmentIndex.res_pk == pk)
        pks = select(CompartmentIndex.res_pk).where(CompartmentIndex.patient_id.in_(patients),
                                                     CompartmentIndex.res_type == rtype)
        return [t for t in self.s.execute(select(ResourceRow.text).where(
            ResourceRow.pk.in_(pks), ResourceRow.deleted.is_(False),
            ResourceRow.text.contains(mentioning))).scalars() if t]

    def lock(self, pk: int) -> None:
        """Hold the current row until the unit ends, so writers that look at it go one at a time (PostgreSQL)."""
        self.s.execute(select(ResourceRow.pk).where(ResourceRow.pk == pk).with_for_update())

    def live_texts(self, rtype: str) -> list[str]:
        """The current text of every live resource of a type (maintenance steps, not requests)."""
        return [t for t in self.s.execute(select(ResourceRow.text).where(
            ResourceRow.res_type == rtype, ResourceRow.deleted.is_(False)).order_by(ResourceRow.pk)).scalars() if t]

    def in_compartment(self, pk: int, patient_ids: frozenset[str]) -> bool:
        return self.s.execute(select(CompartmentIndex.id).where(
            CompartmentIndex.res_pk == pk, CompartmentIndex.patient_id.in_(patient_ids)).limit(1)).first() is not None

    def in_compartments(self, pks: Sequence[int], patient_ids: frozenset[str]) -> set[int]:
        """The pks among `pks` filed in the compartment of one of `patient_ids` (one SELECT per 500)."""
        out: set[int] = set()
        for i in range(0, len(pks), 500):
            out.update(self.s.execute(select(CompartmentIndex.res_pk).distinct().where(
                CompartmentIndex.res_pk.in_(list(pks[i:i + 500])),
                CompartmentIndex.patient_id.in_(sorted(patient_ids)))).scalars())
        return out

    def pks_where(self, pks: Sequence[int], cond: Any) -> set[int]:
        """The pks among `pks` whose current row satisfies `cond` (a condition on fhir_resource)."""
        out: set[int] = set()
        for i in range(0, len(pks), 500):
            out.update(self.s.execute(select(ResourceRow.pk).where(
                ResourceRow.pk.in_(list(pks[i:i + 500])), cond)).scalars())
        return out

    def patients_of(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
        """(type, id) -> the patients whose compartment the current resource is filed in."""
        out: dict[tuple[str, str], set[str]] = {}
        wanted = set(refs)
        ids = sorted({i for _, i in wanted})
        for n in range(0, len(ids), 500):
            q = (select(ResourceRow.res_type, ResourceRow.fhir_id, CompartmentIndex.patient_id)
                 .join(CompartmentIndex, CompartmentIndex.res_pk == ResourceRow.pk)
                 .where(ResourceRow.fhir_id.in_(ids[n:n + 500])))
            for t, i, p in self.s.execute(q):
                if (t, i) in wanted:
                    out.setdefault((t, i), set()).add(p)
        return out

    def last_live_version(self, pk: int) -> ResourceVersion | None:
        """The newest version of a resource that has content (for a deleted resource: what was deleted)."""
        self.flush_index()
        return self.s.execute(select(ResourceVersion).where(
            ResourceVersion.res_pk == pk, ResourceVersion.text.is_not(None))
            .order_by(ResourceVersion.version.desc()).limit(1)).scalar_one_or_none()

    def referrers(self, rtype: str, fhir_id: str, pk: int, limit: int = 3,
                  ignoring: Sequence[str] = ()) -> list[tuple[str, str]]:
        """Live resources (other than itself, and of none of the types `ignoring`) that reference `rtype/fhir_id`."""
        self.flush_index()
        q = (select(ResourceRow.res_type, ResourceRow.fhir_id).distinct()
             .join(ReferenceIndex, ReferenceIndex.res_pk == ResourceRow.pk)
             .where(ReferenceIndex.target_type == rtype, ReferenceIndex.target_id == fhir_id,
                    ResourceRow.pk != pk, ResourceRow.deleted.is_(False)))
        if ignoring:
            q = q.where(ReferenceIndex.res_type.not_in(list(ignoring)))
        return list(dict.fromkeys((t, i) for t, i in self.s.execute(q.limit(limit))))

    def history_rows(self, res_pk: int | None, rtype: str | None, since_ms: int | None, before: int | None,
                     limit: int, types: Sequence[str] | None = None) -> list[ResourceVersion]:
        """Versions newest first (of one resource, one type, or all, or all of `types`), detached from the session."""
        q = select(ResourceVersion)
        if res_pk is not None:
            q = q.where(ResourceVersion.res_pk == res_pk)
        elif rtype is not None:
            q = q.where(ResourceVersion.res_type == rtype)
        elif types is not None:
            q = q.where(ResourceVersion.res_type.in_(list(types)))
        if since_ms is not None:
            q = q.where(ResourceVersion.updated_ms >= since_ms)
        if before is not None:
            q = q.where(ResourceVersion.pk < before)
        rows = list(self.s.execute(q.order_by(ResourceVersion.pk.desc()).limit(limit)).scalars())
        self.s.expunge_all()
        return rows

    # ---- references (includes, $everything) ----
    def references_from(self, pks: list[int], param: str | None, target: str | None) -> list[tuple[str, str]]:
        """(type, id) of resources referenced from `pks` through `param` ('*' or None: any)."""
        q = select(ReferenceIndex.target_type, ReferenceIndex.target_id).where(
            ReferenceIndex.res_pk.in_(pks), ReferenceIndex.target_id.is_not(None))
        if param and param != "*":
            q = q.where(ReferenceIndex.param == param)
        if target:
            q = q.where(ReferenceIndex.target_type == target)
        return [(t, i) for t, i in self.s.execute(q.distinct()) if t and i]

    def referencing(self, source: str, param: str, targets: list[tuple[str, str]]) -> list[int]:
        """pks of `source` resources ('*': any type) whose `param` points at one of `targets`."""
        out: list[int] = []
        by_type: dict[str, list[str]] = {}
        for t, i in targets:
            by_type.setdefault(t, []).append(i)
        for t, ids in by_type.items():
            q = select(ReferenceIndex.res_pk).where(ReferenceIndex.target_type == t, ReferenceIndex.target_id.in_(ids))
            if source != "*":
                q = q.where(ReferenceIndex.res_type == source)
            if param != "*":
                q = q.where(ReferenceIndex.param == param)
            out += [r[0] for r in self.s.execute(q.distinct())]
        return out

    def pks_of(self, refs: list[tuple[str, str]]) -> list[tuple[int, str, str, str]]:
        """(pk, type, id, text) of live resources named by (type, id)."""
        out: list[tuple[int, str, str, str]] = []
        by_type: dict[str, list[str]] = {}
        for t, i in refs:
            by_type.setdefault(t, []).append(i)
        for t, ids in by_type.items():
            for start in range(0, len(ids), 500):
                q = select(ResourceRow.pk, ResourceRow.res_type, ResourceRow.fhir_id, ResourceRow.text).where(
                    ResourceRow.res_type == t, ResourceRow.fhir_id.in_(ids[start:start + 500]),
                    ResourceRow.deleted.is_(False))
                out += [(r[0], r[1], r[2], r[3] or "") for r in self.s.execute(q)]
        return out

    def compartment_rows(self, flt: CompartmentFilter, after: int, limit: int | None) -> list[tuple[int, str, str, str]]:
        """(pk, type, id, text) of a patient's compartment members past key `after`, in key order."""
        q = (select(ResourceRow.pk, ResourceRow.res_type, ResourceRow.fhir_id, ResourceRow.text)
             .join(CompartmentIndex, CompartmentIndex.res_pk == ResourceRow.pk)
             .where(*flt.conditions(typed=True), ResourceRow.pk > after).order_by(ResourceRow.pk))
        rows = self.s.execute(q.limit(limit) if limit is not None else q).all()
        return [(pk, t, i, text or "") for pk, t, i, text in rows]

    def compartment_pks(self, flt: CompartmentFilter, after: int, upto: int | None) -> list[int]:
        """Keys of a patient's compartment members of every type in the key window (after, upto]."""
        window = [ResourceRow.pk > after] + ([ResourceRow.pk <= upto] if upto is not None else [])
        return list(self.s.execute(select(ResourceRow.pk).join(CompartmentIndex, CompartmentIndex.res_pk == ResourceRow.pk)
                                   .where(*flt.conditions(typed=False), *window)).scalars())

    def referenced_up_to(self, flt: CompartmentFilter, upto: int, target_ids: Sequence[str]) -> set[tuple[str, str]]:
        """(type, id) among `target_ids` that compartment members with keys <= `upto` reference."""
        rows = self.s.execute(
            select(ReferenceIndex.target_type, ReferenceIndex.target_id).distinct()
            .join(ResourceRow, ResourceRow.pk == ReferenceIndex.res_pk)
            .join(CompartmentIndex, CompartmentIndex.res_pk == ResourceRow.pk)
            .where(*flt.conditions(typed=False), ResourceRow.pk <= upto,
                   ReferenceIndex.target_id.in_(sorted(set(target_ids))))).all()
        return {(str(t), str(i)) for t, i in rows}

    # ---- writes ----
    def write(self, resource: dict[str, Any], current: ResourceRow | None, method: str) -> ResourceRow:
        """Store a new version of `resource` (id already set), re-index it, and return its row."""
        instant, ms = now_instant()
        if current is not None and ms <= current.updated_ms:
            ms = current.updated_ms + 1  # versions of a resource have strictly increasing times
            instant = instant_of(ms)
        version = current.version + 1 if current is not None else 1
        meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
        resource["meta"] = {"versionId": str(version), "lastUpdated": instant, **meta}
        text = dumps(resource)
        rtype, fid = resource["resourceType"], resource["id"]
        note_write(self.s.info, resource, current.text if current is not None and not current.deleted else None)
        if current is None:
            row = ResourceRow(pk=self._new_pk(), res_type=rtype, fhir_id=fid, version=version, updated_ms=ms,
                              last_updated=instant, deleted=False, text=text)
            self.s.add(row)
            if row.pk is None:
                self.s.flush()  # no block allocation here: let the database number the row now
        else:
            row = current
            row.version, row.updated_ms, row.last_updated, row.deleted, row.text = version, ms, instant, False, text
            self.drop_index(row.pk)
        self._add_version(row, method, text)
        self._index(row.pk, resource)
        return row

    def mark_deleted(self, row: ResourceRow) -> None:
        instant, ms = now_instant()
        row.version += 1
        if ms <= row.updated_ms:
            ms = row.updated_ms + 1
            instant = instant_of(ms)
        row.updated_ms = ms
        row.last_updated, row.deleted, row.text = instant, True, None
        self._add_version(row, "DELETE", None)
        self.drop_index(row.pk)

    def _new_pk(self) -> int | None:
        """A primary key for a new fhir_resource row from a block reserved in this transaction.

        Lets the new rows of a transaction insert in one batch at flush instead of one round trip each
        to learn their keys. PostgreSQL reserves values of the serial sequence; SQLite continues from
        MAX(pk) only in write units (BEGIN IMMEDIATE holds the write lock, so nobody else inserts).
        None (the database assigns it at flush) in a SQLite read unit.
        """
        block: list[int] = self.s.info.setdefault(_PKS_KEY, [])
        if not block:
            conn = self.s.connection()
            size = min(_PK_BLOCK_MAX, 2 ** self.s.info.get("fhir_pk_blocks", 0))
            self.s.info["fhir_pk_blocks"] = self.s.info.get("fhir_pk_blocks", 0) + 1
            if conn.dialect.name == "postgresql":
                block.extend(int(v) for v in conn.execute(_PG_NEXTVALS, {"n": size}).scalars())
            elif conn.get_execution_options().get("write"):
                self.s.flush()  # rows numbered by the database so far count in MAX(pk)
                top = int(conn.execute(select(func.coalesce(func.max(ResourceRow.pk), 0))).scalar_one())
                block.extend(range(top + 1, top + 1 + _PK_BLOCK_MAX))
            else:
                return None
        return block.pop(0)

    def _add_version(self, row: ResourceRow, method: str, text: str | None) -> None:
        """Buffer the version row; flush_index writes all of a unit's versions in one executemany."""
        self.s.info.setdefault(_VERSIONS_KEY, []).append({
            "res_pk": row.pk, "res_type": row.res_type, "fhir_id": row.fhir_id, "version": row.version,
            "updated_ms": row.updated_ms, "last_updated": row.last_updated, "method": method, "text": text})

    def _index(self, pk: int, resource: dict[str, Any]) -> None:
        rows = self.extractor.rows(resource)
        buf: dict[str, list[dict[str, Any]]] = self.s.info.setdefault(_BUFFER_KEY, {})
        for kind, items in rows.items():
            for r in items:
                r["res_pk"] = pk
            buf.setdefault(kind, []).extend(items)
        comp = compartment_rows(resource, rows)
        for r in comp:
            r["res_pk"] = pk
        buf.setdefault("compartment", []).extend(comp)

    def drop_index(self, pk: int) -> None:
        buf: dict[str, list[dict[str, Any]]] = self.s.info.get(_BUFFER_KEY, {})
        for kind in list(buf):
            buf[kind] = [r for r in buf[kind] if r["res_pk"] != pk]
        for table in list(INDEX_TABLES.values()) + [CompartmentIndex]:
            self.s.execute(delete(table).where(table.res_pk == pk))

    def flush_index(self) -> None:
        """Write pending resource rows, then buffered version and index rows; call before searching and commit.

        render_nulls keeps every row's keys identical, so each table is one executemany (the ORM otherwise
        leaves out None values and splits the batch wherever the set of keys changes).
        """
        self.s.flush()
        versions: list[dict[str, Any]] = self.s.info.pop(_VERSIONS_KEY, [])
        if versions:
            self.s.execute(insert(ResourceVersion).execution_options(render_nulls=True), versions)
        buf: dict[str, list[dict[str, Any]]] = self.s.info.pop(_BUFFER_KEY, {})
        for kind, items in buf.items():
            if items:
                table = CompartmentIndex if kind == "compartment" else INDEX_TABLES[kind]
                self.s.execute(insert(table).execution_options(render_nulls=True), items)

    def bump(self, row: ResourceRow, **values: Any) -> None:
        self.s.execute(update(ResourceRow).where(ResourceRow.pk == row.pk).values(**values))
