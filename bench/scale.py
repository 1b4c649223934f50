"""Grow a store to 10k / 100k / 1M Observations and time a portal's two Observation searches at each size."""
from __future__ import annotations

import json
import random
import time
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import text

from fhir_server.access.context import AccessContext

from .bulkload import BulkLoader
from .measure import Client, summary
from .obsgen import GLUCOSE, LOINC, batches

SYSTEM = AccessContext.system("bench")
# The Health page's labs table (latest first) and one test's history when the patient expands it.
QUERIES: dict[str, list[tuple[str, str]]] = {
    "labs": [("category", "laboratory"), ("_sort", "-date")],
    "code": [("code", f"{LOINC}|{GLUCOSE}"), ("_sort", "-date")],
}


def observation_count(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM fhir_resource WHERE res_type = 'Observation'")).scalar())


def grow(engine: Any, base_url: str, target: int, patients: list[str]) -> dict[str, Any]:
    """Add generated patients and Observations until the store holds `target` Observations."""
    need = target - observation_count(engine)
    loader = BulkLoader(engine, base_url)
    start, rows, made = time.perf_counter(), 0, 0
    for batch in batches(seed=target, target=max(need, 0)):
        patients += [p["id"] for p in batch.patients]
        rows += loader.load(batch.resources())
        made += len(batch.observations)
    load_secs = time.perf_counter() - start
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("VACUUM ANALYZE")  # what autovacuum does after a bulk change
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"observations": observation_count(engine), "added": made, "rows_written": rows,
            "load_seconds": round(load_secs, 1), "maintenance_seconds": round(time.perf_counter() - start - load_secs, 1),
            "patients": len(patients)}


def _check(matches: list[tuple[str, str, str]], pid: str, query: str) -> None:
    """The first page is the patient's, of the asked kind, newest first."""
    if not matches:
        raise RuntimeError(f"{query} search for Patient/{pid} found nothing")
    docs = [json.loads(t) for _, _, t in matches]
    dates = [d["effectiveDateTime"] for d in docs]
    ok = all(d["subject"]["reference"] == f"Patient/{pid}" for d in docs) and dates == sorted(dates, reverse=True)
    if not ok:
        raise RuntimeError(f"{query} search for Patient/{pid} returned a wrong first page")


def time_searches(svc: Any, client: Client, patients: list[str], reps: int, rng: random.Random) -> dict[str, Any]:
    """Median first-page times over `reps` patients: a patient's first query, then repeats in process and over HTTP.

    "first" is the first time the store is asked about that patient (its pages are not in the database's
    cache yet, as when a patient opens the portal); "service" and "http" repeat the same query warm.
    """
    chosen = rng.sample(patients, reps) if len(patients) >= reps else [
        patients[i % len(patients)] for i in range(reps)]
    modes = ("first", "service", "http")
    samples: dict[str, dict[str, list[float]]] = {q: {m: [] for m in modes} for q in QUERIES}
    seen: set[str] = set()
    for n, pid in enumerate(rng.choices(patients, k=5) + chosen):
        warm = n < 5
        for q, params in QUERIES.items():
            items = [("patient", pid), *params]
            start = time.perf_counter()
            _, page = svc.search(SYSTEM, "Observation", items)
            first = time.perf_counter() - start
            if warm:
                _check(page.matches, pid, q)
            elif pid not in seen:
                samples[q]["first"].append(first)
            order = ["service", "http"]
            rng.shuffle(order)
            for mode in order:
                if mode == "service":
                    start = time.perf_counter()
                    svc.search(SYSTEM, "Observation", items)
                    secs = time.perf_counter() - start
                else:
                    secs, _ = client.ok("/fhir/Observation?" + urlencode(items))
                if not warm:
                    samples[q][mode].append(secs)
        seen.add(pid)
    return {q: {m: summary(s) for m, s in by_mode.items()} for q, by_mode in samples.items()}


def verify_sample(stores: Any) -> dict[str, Any]:
    """Write one generated sample through the service layer and through BulkLoader; the rows must match."""
    import copy

    from .bulkload import compare, snapshot
    batch = next(batches(seed=7, target=400, size=400, per_patient=(100, 250)))
    by_service, by_bulk = stores.new("verify-service"), stores.new("verify-bulk")
    try:
        for res in batch.resources():  # update-as-create: validation, then Repository.write
            by_service.svc.update(SYSTEM, res["resourceType"], res["id"], copy.deepcopy(res))
        BulkLoader(by_bulk.engine, by_bulk.svc.base_url).load(copy.deepcopy(batch.resources()))
        expected, got = snapshot(by_service.engine), snapshot(by_bulk.engine)
    finally:
        by_service.close()
        by_bulk.close()
    problems = compare(expected, got)
    if problems:
        raise RuntimeError("bulk-loaded rows differ from Repository.write's: " + "; ".join(problems))
    return {"resources": len(batch.resources()), "rows_compared": sum(len(v) for v in expected.values()),
            "identical": True}
