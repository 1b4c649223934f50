"""Generate portal_ui/data/lab_tests.json (the practice console's lists of LOINC-coded lab tests and
document types) from scripts/data/lab_tests.csv, which cites its sources.

Every code is checked (LOINC's mod-10 check digit), every unit is a UCUM expression of the characters
UCUM allows, every range is ordered.  `python scripts/gen_lab_tests.py --check` exits 1 when the
packaged file is not what the source produces (the tests run it).
"""
from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "scripts" / "data" / "lab_tests.csv"
TARGET = ROOT / "portal_ui" / "data" / "lab_tests.json"
_CODE = re.compile(r"^(\d{1,7})-(\d)$")
_UCUM = re.compile(r"^[A-Za-z0-9%/.*\[\]{}_^'-]+$")


def loinc_check_digit(digits: str) -> int:
    """LOINC's check digit: mod 10 over the digits, doubling every other one from the right."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return (10 - total % 10) % 10


def valid_loinc(code: str) -> bool:
    m = _CODE.match(code or "")
    return bool(m) and loinc_check_digit(m.group(1)) == int(m.group(2))


def _num(raw: str, where: str) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{where}: {raw!r} is not a number") from None
    return int(value) if value.is_integer() else value


def _pair(raw: str, where: str) -> list[float | None] | None:
    if not raw.strip():
        return None
    low, _, high = raw.partition("-")
    pair = [_num(low, where), _num(high, where)]
    if None in pair or pair[0] > pair[1]:  # type: ignore[operator]
        raise SystemExit(f"{where}: {raw!r} is not a low-high range")
    return pair


def build() -> dict[str, object]:
    lines = [ln for ln in SOURCE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    labs, docs, seen = [], [], set()
    for n, row in enumerate(csv.DictReader(lines), 2):
        where = f"{SOURCE.name} row {n} ({row['loinc']})"
        if not valid_loinc(row["loinc"]):
            raise SystemExit(f"{where}: not a LOINC code (the check digit does not match)")
        if row["loinc"] in seen:
            raise SystemExit(f"{where}: listed twice")
        seen.add(row["loinc"])
        if row["kind"] == "doc":
            docs.append({"code": row["loinc"], "display": row["long_name"], "name": row["name"]})
            continue
        if row["kind"] != "lab":
            raise SystemExit(f"{where}: kind must be lab or doc")
        if not _UCUM.match(row["unit"]):
            raise SystemExit(f"{where}: {row['unit']!r} is not a UCUM unit expression")
        low, high = _num(row["low"], where), _num(row["high"], where)
        crit_low, crit_high = _num(row["critical_low"], where), _num(row["critical_high"], where)
        if low is not None and high is not None and low > high:
            raise SystemExit(f"{where}: the range is reversed")
        if crit_low is not None and low is not None and crit_low > low:
            raise SystemExit(f"{where}: the critical low is inside the range")
        if crit_high is not None and high is not None and crit_high < high:
            raise SystemExit(f"{where}: the critical high is inside the range")
        if row["range_source"] not in ("msd", "common"):
            raise SystemExit(f"{where}: range_source must be msd or common")
        labs.append({"code": row["loinc"], "display": row["long_name"], "name": row["name"], "unit": row["unit"],
                     "low": low, "high": high, "female": _pair(row["female"], where), "male": _pair(row["male"], where),
                     "critical_low": crit_low, "critical_high": crit_high, "range_source": row["range_source"]})
    sources = [ln[1:].strip() for ln in SOURCE.read_text().splitlines() if ln.startswith("#")]
    return {"generated_by": "scripts/gen_lab_tests.py from scripts/data/lab_tests.csv", "notes": sources,
            "labs": sorted(labs, key=lambda t: t["name"].lower()), "documents": docs}


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run python scripts/gen_lab_tests.py")
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
