"""Bulk-load generated resources as exactly the rows Repository.write stores, fast enough for 1M.

Index rows come from fhir_server's own Extractor and compartment_rows; only the INSERTs are batched
(executemany on SQLite, COPY on PostgreSQL).  `verify` proves on a sample that the rows are identical
to those the service layer writes.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine

from fhir_server.r4.dates import now_instant
from fhir_server.storage.indexing import Extractor, compartment_rows
from fhir_server.storage.models import INDEX_TABLES, CompartmentIndex, ResourceRow, ResourceVersion
from fhir_server.storage.repository import dumps

METHOD = "PUT"  # what update-as-create with a client-assigned id records, as an EHR push does
RESOURCE_COLS = ["pk", "res_type", "fhir_id", "version", "updated_ms", "last_updated", "deleted", "text"]
VERSION_COLS = ["res_pk", "res_type", "fhir_id", "version", "updated_ms", "last_updated", "method", "text"]
COMPARTMENT_COLS = ["patient_id", "res_pk", "res_type", "date_low", "date_high"]


def _columns(table: Any) -> list[str]:
    return [c.name for c in table.__table__.columns if c.name != "id"]


TABLES: dict[str, tuple[str, list[str]]] = {
    kind: (t.__tablename__, _columns(t)) for kind, t in INDEX_TABLES.items()}
TABLES["compartment"] = (CompartmentIndex.__tablename__, COMPARTMENT_COLS)


class BulkLoader:
    """Appends brand-new resources (version 1) to a store, one transaction per call to `load`."""

    def __init__(self, engine: Engine, base_url: str) -> None:
        self.engine = engine
        self.extractor = Extractor(base_url)
        self.postgres = engine.dialect.name == "postgresql"

    def rows(self, resources: Iterable[dict[str, Any]], first_pk: int) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table for `resources`, as Repository.write would build them."""
        out: dict[str, list[tuple[Any, ...]]] = {"resource": [], "version": [], **{k: [] for k in TABLES}}
        pk = first_pk
        for res in resources:
            instant, ms = now_instant()
            meta = {k: v for k, v in (res.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
            res["meta"] = {"versionId": "1", "lastUpdated": instant, **meta}
            text = dumps(res)
            rtype, fid = res["resourceType"], res["id"]
            out["resource"].append((pk, rtype, fid, 1, ms, instant, False, text))
            out["version"].append((pk, rtype, fid, 1, ms, instant, METHOD, text))
            index = self.extractor.rows(res)
            for kind, items in index.items():
                cols = TABLES[kind][1]
                out[kind] += [tuple(pk if c == "res_pk" else r.get(c) for c in cols) for r in items]
            out["compartment"] += [(r["patient_id"], pk, r["res_type"], r["date_low"], r["date_high"])
                                   for r in compartment_rows(res, index)]
            pk += 1
        return out

    def load(self, resources: list[dict[str, Any]]) -> int:
        """Store `resources` (ids set, not yet stored) in one transaction; returns rows written."""
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            if not self.postgres:
                cur.execute("BEGIN IMMEDIATE")
            cur.execute(f"SELECT COALESCE(MAX(pk), 0) FROM {ResourceRow.__tablename__}")
            rows = self.rows(resources, int(cur.fetchone()[0]) + 1)
            plan = [(ResourceRow.__tablename__, RESOURCE_COLS, rows["resource"]),
                    (ResourceVersion.__tablename__, VERSION_COLS, rows["version"])]
            plan += [(TABLES[k][0], TABLES[k][1], rows[k]) for k in TABLES]
            written = 0
            for table, cols, data in plan:
                if data:
                    self._insert(cur, table, cols, data)
                    written += len(data)
            if self.postgres:
                cur.execute("SELECT setval(pg_get_serial_sequence('fhir_resource', 'pk'), "
                            "(SELECT MAX(pk) FROM fhir_resource))")
            raw.commit() if self.postgres else cur.execute("COMMIT")
            cur.close()
            return written
        except BaseException:
            raw.rollback() if self.postgres else raw.cursor().execute("ROLLBACK")
            raise
        finally:
            raw.close()

    def _insert(self, cur: Any, table: str, cols: list[str], data: list[tuple[Any, ...]]) -> None:
        names = ", ".join(cols)
        if self.postgres:
            with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(cols))
            cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", data)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every fhir_* row with surrogate keys and write times replaced, for comparing two stores."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT pk, res_type, fhir_id FROM fhir_resource")
        names = {pk: (t, i) for pk, t, i in cur.fetchall()}
        out: dict[str, list[tuple[Any, ...]]] = {}
        specs = [("fhir_resource", RESOURCE_COLS), ("fhir_resource_version", VERSION_COLS)]
        specs += list(TABLES.values())
        for table, cols in specs:
            cur.execute(f"SELECT {', '.join(cols)} FROM {table}")
            rows = []
            for row in cur.fetchall():
                vals = dict(zip(cols, row, strict=True))
                vals["res_pk"] = names.get(vals.pop("res_pk", vals.pop("pk", None)))
                vals.pop("updated_ms", None)
                vals.pop("last_updated", None)
                if isinstance(vals.get("text"), str) and vals["text"].startswith("{"):
                    doc = json.loads(vals["text"])
                    doc.get("meta", {}).pop("lastUpdated", None)
                    vals["text"] = json.dumps(doc, sort_keys=True)
                if "deleted" in vals:
                    vals["deleted"] = bool(vals["deleted"])
                rows.append(tuple(sorted((k, repr(v)) for k, v in vals.items())))
            out[table] = sorted(rows)
        return out
    finally:
        raw.close()


def compare(expected: dict[str, list[tuple[Any, ...]]], got: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    """Differences between two snapshots, table by table (empty: identical)."""
    problems = []
    for table, rows in expected.items():
        other = got.get(table, [])
        if rows != other:
            missing = len(set(rows) - set(other))
            extra = len(set(other) - set(rows))
            problems.append(f"{table}: {len(rows)} vs {len(other)} rows ({missing} missing, {extra} extra)")
    return problems
