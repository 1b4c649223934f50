"""`python -m bench`: measure issue 2's performance targets on SQLite and PostgreSQL and write the report."""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import export, machine, report
from .auth import backend_token
from .measure import Client
from .scale import grow, time_searches, verify_sample
from .server import ServerProcess
from .stores import Stores
from .synthea import everything_times, import_rate, largest_patient_id, read_ids, read_vs_floor

FULL_SIZES = [10_000, 100_000, 1_000_000]
QUICK_SIZES = [10_000, 100_000]


@dataclass
class Plan:
    """How much to measure: the full run for the report, or a quick look while working."""

    mode: str
    sizes: list[int]
    imports: int
    reads: int
    searches: int
    everything: int


LOADS: list[float] = []


def log(msg: str) -> None:
    LOADS.append(os.getloadavg()[0])
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_backend(backend: str, plan: Plan, rng: random.Random) -> dict[str, Any]:
    """Every measurement on one backend, on stores made for this run and thrown away after it."""
    stores = Stores(backend)
    try:
        main = stores.new("main")
        out: dict[str, Any] = {"backend": backend, "version": stores.version()}
        rates, first = [], None
        for n in range(plan.imports):
            store = main if n == 0 else stores.new(f"import{n}")
            result = import_rate(store.svc)
            first = first or result
            rates.append(result["per_second"])
            log(f"{backend}: Synthea import {result['per_second']:,.0f} resources/s")
            if store is not main:
                store.close()
        assert first is not None
        out["import"] = {**first, "per_second": round(statistics.median(rates), 1), "runs": len(rates),
                         "all_per_second": rates}
        out["export"] = {"synthea": export.synthea_rate(main)}  # $export (issue 18) of the Synthea set
        log(f"{backend}: $export of the Synthea set {out['export']['synthea']['per_second']:,} resources/s")
        out["bulk_verify"] = verify_sample(stores)
        log(f"{backend}: bulk loader writes the same rows as Repository.write ({out['bulk_verify']['rows_compared']})")
        server = ServerProcess(main.config(), main.folder / "server.log").start()
        client = Client(server.url)
        try:
            client.authorize(backend_token(main.app, client))
            pid = largest_patient_id(main.svc)
            out["everything"] = everything_times(main.svc, client, pid, plan.everything)
            log(f"{backend}: $everything {out['everything']['http']['median_ms']:.1f} ms over HTTP")
            out["read"] = read_vs_floor(client, read_ids(main.engine, rng, plan.reads), rng)
            log(f"{backend}: read {out['read']['full']['median_ms']:.2f} ms (trusted "
                f"{out['read']['trusted']['median_ms']:.2f} ms) vs floor {out['read']['floor']['median_ms']:.2f} ms"
                f" = {out['read']['ratio_full']:.2f}x (token cache off {out['read']['ratio_uncached']:.2f}x,"
                f" trusted {out['read']['ratio_trusted']:.2f}x)")
            if plan.mode == "read":
                return out
            patients: list[str] = []
            out["search"] = []
            for size in plan.sizes:
                info = grow(main.engine, main.svc.base_url, size, patients)
                log(f"{backend}: {info['observations']:,} Observations (load {info['load_seconds']} s)")
                info["timings"] = time_searches(main.svc, client, patients, plan.searches, rng)
                t = info["timings"]
                log(f"{backend}: first/service/http labs " + " / ".join(
                    f"{t['labs'][m]['median_ms']:.2f}" for m in report.MODES) + " ms, code " + " / ".join(
                    f"{t['code'][m]['median_ms']:.2f}" for m in report.MODES) + " ms")
                out["search"].append(info)
            out["everything_at_largest"] = everything_times(main.svc, client, pid, plan.everything)
            out["export"]["observations"] = export.observations_rate(main)
            log(f"{backend}: $export of {out['export']['observations']['resources']:,} Observations "
                f"{out['export']['observations']['per_second']:,} resources/s")
        finally:
            client.close()
            server.stop()
        return out
    finally:
        stores.close()


def export_only(backends: list[str], observations: int) -> int:
    """`python -m bench --export N`: the $export figures of docs/performance.md ("Bulk Data export")."""
    results: dict[str, Any] = {"mode": "export", "machine": machine.describe(),
                               "started": time.strftime("%Y-%m-%d %H:%M %Z"), "backends": []}
    for backend in backends:
        stores = Stores(backend)
        try:
            store = stores.new("export")
            import_rate(store.svc)
            results["backends"].append({"backend": backend, "version": stores.version(),
                                        "export": export.run(store, observations, log)})
        finally:
            stores.close()
    path = report.write_json(results)
    print(export.summary(results["backends"]))
    print(f"raw figures: {path.relative_to(report.ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10k and 100k only, fewer repetitions")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--read", action="store_true",
                        help="only import and read by id against the floor (a quick check while tuning reads)")
    parser.add_argument("--export", type=int, metavar="N", default=None,
                        help="only Bulk Data $export: of the Synthea set, then of N generated Observations")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args(argv)
    if args.export is not None:
        return export_only(["sqlite", "postgres"] if args.backend == "both" else [args.backend], args.export)
    plan = (Plan("read", [], 1, 2000, 0, 3) if args.read else Plan("quick", QUICK_SIZES, 1, 500, 20, 10)
            if args.quick else Plan("full", FULL_SIZES, 3, 2000, 50, 30))
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    started = time.time()
    results: dict[str, Any] = {"mode": plan.mode, "machine": machine.describe(),
                               "started": time.strftime("%Y-%m-%d %H:%M %Z"), "backends": []}
    rng = random.Random(args.seed)
    for backend in backends:
        log(f"{backend}: starting ({plan.mode})")
        results["backends"].append(run_backend(backend, plan, rng))
    results["minutes"] = round((time.time() - started) / 60, 1)
    results["load"] = [min(LOADS), statistics.median(LOADS), max(LOADS)]
    path = report.write_json(results)
    if plan.mode == "read":
        print("\n".join(f"{r['backend']}: read full {r['read']['full']['median_ms']:.2f} ms, trusted "
                        f"{r['read']['trusted']['median_ms']:.2f} ms, floor {r['read']['floor']['median_ms']:.2f} ms:"
                        f" {r['read']['ratio_full']:.2f}x (token cache off {r['read']['ratio_uncached']:.2f}x,"
                        f" trusted {r['read']['ratio_trusted']:.2f}x)" for r in results["backends"]))
        return 0
    print("\n".join(report.tables(results) + [""] + report.targets(results)))
    print(f"\nraw figures: {path.relative_to(report.ROOT)}")
    if plan.mode == "full" and args.backend == "both":
        report.write_doc(results)
        print(f"report: {report.DOC.relative_to(report.ROOT)}")
    else:
        print("docs/performance.md is only rewritten by a full run on both backends (make bench)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
