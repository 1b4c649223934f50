"""Load FHIR Bundles (transaction, batch, collection) and NDJSON files through the FHIR service."""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from fhir_server import AccessContext, FhirError, FhirService

NDJSON_CHUNK = 500


class ImportError_(Exception):
    """A file that cannot be imported; the message names the file and the problem."""


def _as_transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    entries = []
    for r in resources:
        if r.get("id"):
            entries.append({"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}})
        else:
            entries.append({"resource": r, "request": {"method": "POST", "url": r.get("resourceType", "")}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _units(path: Path) -> Iterator[dict[str, Any]]:
    """Yield transaction/batch Bundles to post for one file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImportError_(f"{path}: cannot read ({exc.strerror})") from None
    if path.suffix == ".ndjson":
        lines = [ln for ln in text.splitlines() if ln.strip()]
        for i in range(0, len(lines), NDJSON_CHUNK):
            try:
                chunk = [json.loads(ln) for ln in lines[i:i + NDJSON_CHUNK]]
            except (ValueError, RecursionError) as exc:
                raise ImportError_(f"{path}: line {i + 1}+: not valid JSON ({exc})") from None
            yield _as_transaction(chunk)
        return
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ImportError_(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        if isinstance(doc, dict) and doc.get("resourceType"):
            yield _as_transaction([doc])
            return
        raise ImportError_(f"{path}: not a FHIR Bundle or resource")
    if doc.get("type") in ("transaction", "batch"):
        yield doc
    elif doc.get("type") == "collection":
        yield _as_transaction([e["resource"] for e in doc.get("entry", []) if isinstance(e, dict) and e.get("resource")])
    else:
        raise ImportError_(f"{path}: Bundle.type {doc.get('type')!r} cannot be imported")


def _count(bundle: dict[str, Any]) -> Counter[str]:
    return Counter(e.get("resource", {}).get("resourceType", "?") for e in bundle.get("entry", [])
                   if isinstance(e, dict) and e.get("resource"))


def run_import(svc: FhirService, paths: list[Path], out: TextIO = sys.stderr,
               notify: bool = False) -> tuple[Counter[str], float]:
    """Import every file (each unit atomic); returns counts by type and elapsed seconds.

    Historical data tells nobody (notify False) unless asked: `carespace import --notify`.
    """
    ctx = AccessContext.system("import", notify=notify)
    totals: Counter[str] = Counter()
    start = time.perf_counter()
    for n, path in enumerate(paths, 1):
        for unit in _units(path):
            try:
                svc.process_bundle(ctx, unit)
            except FhirError as err:
                raise ImportError_(f"{path}: {err.diagnostics}") from None
            totals.update(_count(unit))
        done = sum(totals.values())
        rate = done / max(time.perf_counter() - start, 1e-9)
        bar = "#" * (30 * n // len(paths))
        out.write(f"\r[{bar:<30}] {n}/{len(paths)} files, {done} resources, {rate:,.0f}/s")
        out.flush()
    out.write("\n")
    return totals, time.perf_counter() - start
