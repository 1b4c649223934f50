"""`python -m bench.scaling`: the load test (bench/load.py) against 1, 2 and 4 workers on PostgreSQL, and with
reads sent to a streaming replica, reporting throughput per worker and where it stops scaling.

Each configuration gets a fresh database on one throwaway primary (and its replica, made by pg_basebackup -R)
and the same crowd of users with a short think time, so the server is the bottleneck. The 1-worker run is
the floor each ratio is taken against, in the same run on the same machine. The replica's share of reads
is counted by PostgreSQL itself (pg_stat_database on each cluster).

    .venv/bin/python -m bench.scaling --users 40 --seconds 30 --json bench/results/scaling.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import load

CONFIGS = [(1, False), (2, False), (4, False), (2, True), (4, True)]


def _xacts(cluster: Any, name: str) -> int:
    rows = cluster.sql(f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{name}'")
    return int(rows[0][0]) if rows else 0


def _caught_up(primary: Any, replica: Any) -> None:
    target = primary.sql("SELECT CAST(pg_current_wal_insert_lsn() AS TEXT)")[0][0]
    deadline = time.time() + 60
    while not replica.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'")[0][0]:
        if time.time() > deadline:
            raise RuntimeError("the replica did not catch up in 60 s")
        time.sleep(0.05)


def measure(users: int, seconds: float, think: float, threads: int, configs: list[tuple[int, bool]]) -> list[dict[str, Any]]:
    """One load run per (workers, replica) configuration; the figures of each."""
    from tests.support.postgres import Cluster
    primary = Cluster().start()
    replica = None
    try:
        if any(r for _, r in configs):
            time.sleep(1)
            replica = primary.replica()
            time.sleep(1)
        rows = []
        for workers, with_replica in configs:
            name = f"scale_w{workers}{'_r' if with_replica else ''}"
            db_url = primary.create_database(name)
            folder = Path(tempfile.mkdtemp(prefix=f"carespace-scale-{workers}-"))
            ready = (lambda: _caught_up(primary, replica)) if with_replica and replica is not None else None
            before = (_xacts(primary, name), _xacts(replica, name) if replica is not None else 0)
            result = load.run("postgres", db_url, users, seconds, think, threads, folder=folder, workers=workers,
                              replica_url=replica.url(name) if with_replica and replica is not None else None,
                              ready=ready)
            after = (_xacts(primary, name), _xacts(replica, name) if replica is not None else 0)
            reads = [k for name_, k in result["kinds"].items() if name_ != "read back"]
            result["workers"] = workers
            result["replica"] = with_replica
            result["xacts_primary"] = after[0] - before[0]
            result["xacts_replica"] = after[1] - before[1]
            result["p50_ms"] = statistics.median(k["p50"] for k in reads)
            result["p95_ms"] = max(k["p95"] for k in reads)
            rows.append(result)
            print(f"[{time.strftime('%H:%M:%S')}] {workers} worker(s){' + replica' if with_replica else ''}: "
                  f"{result['per_s']:.0f} requests/s, {result['errors']} errors, load {os.getloadavg()[0]:.1f}",
                  file=sys.stderr, flush=True)
        return rows
    finally:
        if replica is not None:
            replica.stop()
        primary.stop()


def read_cost(reads: int) -> dict[str, Any]:
    """In-process reads by id and searches, primary only vs routed through the replica (its fence lookup and
    replay check), alternating on one database: what reading from a replica costs a request."""
    from carespace import close_app, create_app, db
    from fhir_server import AccessContext
    from tests.support.postgres import Cluster
    primary = Cluster().start()
    time.sleep(1)
    try:
        url = primary.create_database("reads")
        replica = primary.replica()
        folder = Path(tempfile.mkdtemp(prefix="carespace-replica-reads-"))
        apps = {}
        for name, extra in (("primary", {}), ("replica", {"DATABASE_REPLICA_URL": replica.url("reads")})):
            apps[name] = create_app({"INSTANCE_DIR": str(folder / name), "DATABASE_URL": url, "SECRET_KEY": "bench",
                                     "TESTING": True, **extra})
        db.upgrade(apps["primary"].extensions["carespace.engine"])
        svc = apps["primary"].extensions["fhir_service"]
        sysctx = AccessContext.system("bench")
        pid = svc.create(sysctx, "Patient", {"resourceType": "Patient", "name": [{"family": "Bench"}]}).stored.id
        ids = [svc.create(sysctx, "Observation", {"resourceType": "Observation", "status": "final",
                                                  "subject": {"reference": f"Patient/{pid}"},
                                                  "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}
                                                  }).stored.id for _ in range(200)]
        _caught_up(primary, replica)
        reader = AccessContext.from_scopes(["system/*.rs"], client_id="bench-reader")
        times: dict[str, dict[str, list[float]]] = {n: {"read": [], "search": []} for n in apps}
        for i in range(reads):
            for name, app in apps.items():
                fhir = app.extensions["fhir_service"]
                t0 = time.perf_counter()
                fhir.read(reader, "Observation", ids[i % len(ids)])
                t1 = time.perf_counter()
                fhir.search(reader, "Observation", [("patient", pid), ("code", "2345-7"), ("_count", "10")])
                t2 = time.perf_counter()
                times[name]["read"].append((t1 - t0) * 1000)
                times[name]["search"].append((t2 - t1) * 1000)
        routed = apps["replica"].extensions["fhir_service"].replica.routed
        for app in apps.values():
            close_app(app)
        replica.stop()
        out: dict[str, Any] = {"reads": reads, "routed": dict(routed)}
        for kind in ("read", "search"):
            p, r = statistics.median(times["primary"][kind]), statistics.median(times["replica"][kind])
            out[kind] = {"primary_ms": round(p, 3), "replica_ms": round(r, 3), "ratio": round(r / p, 2)}
        return out
    finally:
        primary.stop()


def table(rows: list[dict[str, Any]]) -> str:
    """Throughput against the 1-worker floor of the same run (markdown)."""
    floor = next((r["per_s"] for r in rows if r["workers"] == 1 and not r["replica"]), rows[0]["per_s"])
    lines = ["| workers | replica | requests/s | vs 1 worker | per worker | median p50 ms | worst p95 ms | "
             "errors | transactions on primary / replica | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workers']} | {'yes' if r['replica'] else 'no'} | {r['per_s']:.0f} | "
                     f"{r['per_s'] / floor:.2f}x | {r['per_s'] / floor / r['workers']:.2f} | {r['p50_ms']:.1f} | "
                     f"{r['p95_ms']:.0f} | {r['errors']} | {r['xacts_primary']:,} / {r['xacts_replica']:,} | "
                     f"{r['load_avg']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=40, help="concurrent users, default 40")
    p.add_argument("--seconds", type=float, default=30, help="per configuration, default 30")
    p.add_argument("--think", type=float, default=0.02, help="mean pause between a user's requests (s)")
    p.add_argument("--threads", type=int, default=8, help="threads per worker")
    p.add_argument("--reads", type=int, default=1000, help="in-process reads for the replica's cost, default 1000")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    cost = read_cost(args.reads)
    print(f"replica routing cost, {cost['reads']} in-process calls each (median ms, primary only / via replica): "
          f"read by id {cost['read']['primary_ms']:.3f} / {cost['read']['replica_ms']:.3f} ({cost['read']['ratio']:.2f}x), "
          f"search {cost['search']['primary_ms']:.3f} / {cost['search']['replica_ms']:.3f} "
          f"({cost['search']['ratio']:.2f}x); routed {cost['routed']}", flush=True)
    rows = measure(args.users, args.seconds, args.think, args.threads, CONFIGS)
    print(table(rows))
    for r in rows:
        for problem in r["problems"]:
            print(f"PROBLEM ({r['workers']} workers{', replica' if r['replica'] else ''}): {problem}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"read_cost": cost, "load": rows}, indent=2, default=str))
    return 1 if any(r["problems"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
