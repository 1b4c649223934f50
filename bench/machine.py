"""What the figures were measured on: they only mean something next to the machine and software."""
from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _cpuinfo(key: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _commit() -> str:
    """HEAD, marked when the measured server code (fhir_server/, carespace/) differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fhir_server", "carespace"], cwd=ROOT,
                               capture_output=True, text=True)
    except OSError:
        return "unknown"
    return (head.stdout.strip() or "unknown") + (" with uncommitted changes" if dirty.stdout.strip() else "")


def describe() -> dict[str, Any]:
    """nproc, CPU model, memory, OS, Python and SQLite versions (PostgreSQL's comes from the server)."""
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": _cpuinfo("model name"),
            "memory_gib": _memory_gib(), "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "commit": _commit()}
