"""Bulk Data $export throughput: the Synthea set and a large generated Observation set, in resources/s.

Each export runs as a worker runs it (ExportService.claim then run) under a backend-services AccessContext
(system/*.rs), from the kick-off to the written manifest: keyset pages of stored JSON text, written to the
NDJSON files as they are stored (no parse, no re-serialization).
"""
from __future__ import annotations

import json
import time
from typing import Any

from fhir_server import AccessContext, ExportService, parse_kickoff

from .scale import grow

CTX = AccessContext.from_scopes(["system/*.rs"], client_id="bench")


def export_rate(service: ExportService, query: str = "") -> dict[str, Any]:
    """One system-level export (query: kick-off parameters, e.g. _type=Observation); resources/s and bytes."""
    from urllib.parse import parse_qsl
    items = parse_qsl(query)
    job = service.kick_off(CTX, parse_kickoff("system", items, f"{service.svc.base_url}/$export?{query}"))
    start = time.perf_counter()
    assert service.claim() == job
    service.run(job)
    secs = time.perf_counter() - start
    st = service.status(CTX, job)
    assert st.state == "done" and st.manifest is not None, st
    n = sum(o["count"] for o in st.manifest["output"])
    size = sum(p.stat().st_size for p in (service.settings.folder / job).iterdir())
    service.cancel(CTX, job)  # the files go
    return {"resources": n, "seconds": round(secs, 2), "per_second": round(n / secs), "megabytes": round(size / 2**20, 1),
            "files": len(st.manifest["output"])}


def synthea_rate(store: Any) -> dict[str, Any]:
    """The median of 5 system exports of the store (holding the Synthea set); the first pays for cold caches."""
    service: ExportService = store.app.extensions["fhir_exports"]
    store.app.extensions["exports"].enabled = False  # the bench runs each job itself, timed
    runs = [export_rate(service) for _ in range(5)]
    return {**sorted(runs, key=lambda r: r["per_second"])[2], "all_per_second": [r["per_second"] for r in runs]}


def observations_rate(store: Any) -> dict[str, Any]:
    """One export of every Observation of the store."""
    store.app.extensions["exports"].enabled = False
    return export_rate(store.app.extensions["fhir_exports"], "_type=Observation")


def run(store: Any, observations: int, log: Any) -> dict[str, Any]:
    """The Synthea export (the store holds the Synthea set), then `observations` Observations exported."""
    out: dict[str, Any] = {"synthea": synthea_rate(store)}
    log(f"{store.backend}: export of the Synthea set {out['synthea']['per_second']:,} resources/s "
        f"({out['synthea']['resources']:,} in {out['synthea']['seconds']} s)")
    info = grow(store.engine, store.svc.base_url, observations, [])
    log(f"{store.backend}: {info['observations']:,} Observations (load {info['load_seconds']} s)")
    out["observations"] = {**observations_rate(store), "store": info["observations"]}
    log(f"{store.backend}: export of {out['observations']['resources']:,} Observations "
        f"{out['observations']['per_second']:,} resources/s ({out['observations']['seconds']} s, "
        f"{out['observations']['megabytes']} MB in {out['observations']['files']} files)")
    return out


def summary(results: list[dict[str, Any]]) -> str:
    return json.dumps(results, indent=2)
