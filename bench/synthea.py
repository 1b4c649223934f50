"""Benchmarks on the 12 Synthea patients: import rate, read by id against the floor, and $everything."""
from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text

from fhir_server.access.context import AccessContext
from fhir_server.operations.everything import EverythingRequest, everything
from tests.support.data import synthea_dir

from .measure import Client, summary, timed

LARGEST = "Fletcher_Hyatt"
SYSTEM = AccessContext.system("bench")


def synthea_files() -> list[Path]:
    """The 12 bundles the repository carries (tests/data/synthea.tar.xz), so a plain clone can run the bench."""
    files = sorted(synthea_dir().glob("*.json"))
    if len(files) != 12:
        raise SystemExit(f"bench needs the 12 Synthea bundles of tests/data/synthea.tar.xz (found {len(files)})")
    return files


def import_rate(svc: Any) -> dict[str, Any]:
    """Load all 12 bundles through carespace.importer.run_import (validation on), as `carespace import` does."""
    from carespace.importer import run_import
    totals, secs = run_import(svc, synthea_files(), out=io.StringIO())
    n = sum(totals.values())
    return {"resources": n, "seconds": round(secs, 2), "per_second": round(n / secs, 1)}


def largest_patient_id(svc: Any) -> str:
    """The server-assigned id of Fletcher Hyatt, whose bundle is the largest."""
    _, page = svc.search(SYSTEM, "Patient", [("family", "Hyatt"), ("given", "Fletcher")])
    if len(page.matches) != 1:
        raise RuntimeError(f"expected one Fletcher Hyatt, found {len(page.matches)}")
    return str(page.matches[0][1])


def everything_times(svc: Any, client: Client, pid: str, reps: int) -> dict[str, Any]:
    """$everything of one patient: in process (all at once) and over HTTP (default paging, every page)."""
    def in_process() -> tuple[float, int]:
        secs, page = timed(lambda: everything(svc, SYSTEM, EverythingRequest(pid, count=None)))
        return secs, len(page.entries)

    def over_http() -> tuple[float, int]:
        """Wall time of fetching every page (the client's JSON parsing to find `next` is not counted)."""
        path, secs, n = f"/fhir/Patient/{pid}/$everything", 0.0, 0
        while path:
            took, body = client.ok(path)
            secs += took
            bundle = json.loads(body)
            n += len(bundle.get("entry", []))
            nxt = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
            path = ""
            if nxt:
                parts = urlsplit(nxt[0])
                path = parts.path + "?" + parts.query
        return secs, n

    out: dict[str, Any] = {}
    for name, fn in (("service", in_process), ("http", over_http)):
        for _ in range(3):
            fn()  # warm-up
        samples, count = [], 0
        for _ in range(reps):
            secs, count = fn()
            samples.append(secs)
        out[name] = {**summary(samples), "resources": count}
    return out


def read_ids(engine: Any, rng: random.Random, n: int) -> list[tuple[str, str]]:
    """`n` random (type, id) pairs of stored resources."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT res_type, fhir_id FROM fhir_resource WHERE deleted = :f"),
                            {"f": False}).all()
    return [(str(t), str(i)) for t, i in rng.choices(sorted(rows), k=n)]


def read_vs_floor(client: Client, ids: list[tuple[str, str]], rng: random.Random) -> dict[str, Any]:
    """Sequential reads of random ids on one connection: full stack (SMART token), the same with the token cache
    off, the same app with the trusted context, and the floor, the four paired in random order for each id."""
    paths = {"full": "/fhir/{}/{}", "uncached": "/uncached/fhir/{}/{}", "trusted": "/trusted/fhir/{}/{}",
             "floor": "/floor/{}/{}"}
    for t, i in ids[:200]:  # warm-up (pools, caches, code paths), checking all serve the same bytes
        bodies = {client.ok(p.format(t, i))[1] for p in paths.values()}
        if len(bodies) != 1:
            raise RuntimeError(f"floor and full stack disagree on {t}/{i}")
    samples: dict[str, list[float]] = {k: [] for k in paths}
    for t, i in ids:
        order = list(paths)
        rng.shuffle(order)
        for kind in order:
            secs, _ = client.ok(paths[kind].format(t, i))
            samples[kind].append(secs)
    out: dict[str, Any] = {k: summary(v) for k, v in samples.items()}
    for kind in ("full", "uncached", "trusted"):
        out[f"ratio_{kind}"] = round(out[kind]["median_ms"] / out["floor"]["median_ms"], 2)
        out[f"ratio_{kind}_p95"] = round(out[kind]["p95_ms"] / out["floor"]["p95_ms"], 2)
    return out
