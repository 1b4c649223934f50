"""Extract search-index rows from a resource, driven by the generated R4 search-parameter table."""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any

from ..r4.dates import MAX_MS, MIN_MS, parse_range
from ..r4.tables import compartment_params, search_params

# Search parameters served from fhir_resource columns instead of index rows.
NATIVE_PARAMS = {"_id", "_lastUpdated"}
CLINICAL_DATE_PARAMS = ("date", "effective", "authoredon", "created", "sent", "onset-date", "recorded-date",
                        "period", "issued", "occurrence", "recorded", "when", "authored", "started")


def normalize(text: str) -> str:
    """Case- and accent-insensitive form used by string search."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()[:255]


def _walk(node: Any, keys: list[Any], i: int = 0) -> Iterator[Any]:
    """Yield every value found at the key path (from keys[i]), flattening arrays at each step."""
    while i < len(keys):
        key = keys[i]
        if isinstance(node, list):
            if isinstance(key, int):
                if len(node) <= key:
                    return
                node, i = node[key], i + 1
                continue
            for item in node:
                yield from _walk(item, keys, i)
            return
        if not isinstance(node, dict) or not isinstance(key, str) or key not in node:
            return
        node, i = node[key], i + 1
    if isinstance(node, list):
        yield from (n for n in node if n is not None)
    elif node is not None:
        yield node


def split_reference(ref: str, base_url: str) -> tuple[str | None, str | None, str | None]:
    """Split a reference string into (type, id, absolute url) relative to this server's base."""
    if not ref or ref.startswith("#"):
        return None, None, None
    if base_url and ref.startswith(base_url.rstrip("/") + "/"):
        ref = ref[len(base_url.rstrip("/")) + 1:]
    if "://" in ref or ref.startswith("urn:"):
        # Another server's resource: keep its type (for :Type modifiers) but never a local id, so a
        # remote Patient/77 is neither the local Patient/77 nor in its compartment.
        parts = ref.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2][:1].isupper() and "_history" not in parts:
            return parts[-2], None, ref
        return None, None, ref
    parts = ref.split("?")[0].split("/")
    if len(parts) >= 2:
        if len(parts) >= 4 and parts[-2] == "_history":
            return parts[-4], parts[-3], None
        return parts[-2], parts[-1], None
    return None, None, None


def _tokens(value: Any, etype: str) -> Iterator[tuple[str | None, str | None, str | None]]:
    if etype == "CodeableConcept" and isinstance(value, dict):
        for coding in value.get("coding", []):
            yield coding.get("system"), coding.get("code"), coding.get("display")
        if value.get("text"):
            yield None, None, value["text"]
    elif etype == "Coding" and isinstance(value, dict):
        yield value.get("system"), value.get("code"), value.get("display")
    elif etype == "Identifier" and isinstance(value, dict):
        yield value.get("system"), value.get("value"), (value.get("type") or {}).get("text")
    elif etype == "ContactPoint" and isinstance(value, dict):
        yield None, value.get("value"), value.get("use")
    elif isinstance(value, bool):
        yield None, "true" if value else "false", None
    elif isinstance(value, (str, int, float)):
        yield None, str(value), None


def _strings(value: Any, etype: str) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif etype == "HumanName" and isinstance(value, dict):
        for k in ("family", "text"):
            if value.get(k):
                yield value[k]
        for k in ("given", "prefix", "suffix"):
            yield from (v for v in value.get(k, []) if v)
    elif etype == "Address" and isinstance(value, dict):
        for k in ("city", "district", "state", "postalCode", "country", "text"):
            if value.get(k):
                yield value[k]
        yield from (v for v in value.get("line", []) if v)
    elif isinstance(value, dict):
        for k in ("text", "display", "value", "name"):
            if isinstance(value.get(k), str):
                yield value[k]


def _dates(value: Any, etype: str) -> Iterator[tuple[int, int]]:
    if isinstance(value, str):
        rng = parse_range(value)
        if rng:
            yield rng
    elif etype == "Period" and isinstance(value, dict):
        lo = parse_range(value["start"]) if value.get("start") else None
        hi = parse_range(value["end"]) if value.get("end") else None
        if lo or hi:
            yield (lo[0] if lo else MIN_MS), (hi[1] if hi else MAX_MS)
    elif etype == "Timing" and isinstance(value, dict):
        for ev in value.get("event", []):
            rng = parse_range(ev)
            if rng:
                yield rng


class Extractor:
    """Turns a resource into index rows; knows the server base to recognise local references."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def rows(self, resource: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Index rows by table kind ('token', 'string', ...), without res_pk."""
        rtype = resource["resourceType"]
        out: dict[str, list[dict[str, Any]]] = {}
        for code, spec in search_params().get(rtype, {}).items():
            if code in NATIVE_PARAMS:
                continue
            ptype = spec["type"]
            rows = out.setdefault(ptype, [])
            before = len(rows)
            for path in spec["paths"]:
                keys, etype, flt, targets = path[0], path[1], path[2], path[3]
                exists = len(path) > 4
                values: Iterable[Any] = _walk(resource, keys)
                if flt:
                    values = [v for v in values if isinstance(v, dict) and v.get(flt[0]) == flt[1]]
                if exists:
                    for v in values:
                        rows.append({"param": code, "system": None, "code": "false" if v is False else "true",
                                     "text": None})
                    continue
                self._add(rows, ptype, code, values, etype, targets)
            if ptype == "token" and exists_param(spec) and len(rows) == before:
                rows.append({"param": code, "system": None, "code": "false", "text": None})
        for rows in out.values():
            for r in rows:
                r["res_type"] = rtype
        return out

    def _add(self, rows: list[dict[str, Any]], ptype: str, code: str, values: Iterable[Any], etype: str,
             targets: list[str] | None) -> None:
        for v in values:
            if ptype == "token":
                for system, c, text in _tokens(v, etype):
                    if c is not None or text is not None:
                        rows.append({"param": code, "system": _cut(system, 255), "code": _cut(c, 255),
                                     "text": normalize(text) if text else None})
            elif ptype == "string":
                for s in _strings(v, etype):
                    rows.append({"param": code, "norm": normalize(s), "exact": s[:255]})
            elif ptype == "date":
                for lo, hi in _dates(v, etype):
                    rows.append({"param": code, "low": lo, "high": hi})
            elif ptype == "reference":
                self._reference(rows, code, v, etype, targets)
            elif ptype in ("quantity", "number"):
                num = v.get("value") if isinstance(v, dict) else v
                if isinstance(num, (int, float)) and not isinstance(num, bool):
                    row: dict[str, Any] = {"param": code, "value": float(num)}
                    if ptype == "quantity" and isinstance(v, dict):
                        row["system"] = _cut(v.get("system"), 255)
                        row["code"] = _cut(v.get("code") or v.get("unit") or v.get("currency"), 64)
                    elif ptype == "quantity":
                        row["system"] = row["code"] = None
                    rows.append(row)
            elif ptype == "uri" and isinstance(v, str):
                rows.append({"param": code, "value": v[:512]})

    def _reference(self, rows: list[dict[str, Any]], code: str, v: Any, etype: str, targets: list[str] | None) -> None:
        if isinstance(v, str):  # canonical / uri used as a reference
            rows.append({"param": code, "target_type": None, "target_id": None, "url": v[:512]})
            return
        if not isinstance(v, dict) or not isinstance(v.get("reference"), str):
            return
        ttype, tid, url = split_reference(v["reference"], self.base_url)
        if targets and ttype not in targets:
            return
        if ttype or url:  # index columns have fixed widths (PostgreSQL enforces them)
            rows.append({"param": code, "target_type": _cut(ttype, 64), "target_id": _cut(tid, 255),
                         "url": _cut(url, 512)})


def _cut(value: Any, width: int) -> Any:
    """A string cut to its index column's width (None and non-strings unchanged)."""
    return value[:width] if isinstance(value, str) else value


def exists_param(spec: dict[str, Any]) -> bool:
    """True for token parameters defined by `.exists()` (e.g. Patient.deceased)."""
    return any(len(p) > 4 for p in spec["paths"])


def compartment_rows(resource: dict[str, Any], rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Patient-compartment membership rows (patient_id, clinical date) for one resource."""
    rtype = resource["resourceType"]
    patients: set[str] = set()
    if rtype == "Patient" and resource.get("id"):
        patients.add(resource["id"])
    if rtype == "Binary":
        ctx_ref = (resource.get("securityContext") or {}).get("reference", "")
        if ctx_ref.startswith("Patient/"):
            patients.add(ctx_ref.split("/")[1])
    params = set(compartment_params(rtype))
    if params:
        for r in rows.get("reference", []):
            if r["param"] in params and r["target_type"] == "Patient" and r["target_id"] and len(r["target_id"]) <= 64:
                patients.add(r["target_id"])
    if not patients:
        return []
    low = high = None
    dates = rows.get("date", [])
    for name in CLINICAL_DATE_PARAMS:
        found = [d for d in dates if d["param"] == name]
        if found:
            low = min(d["low"] for d in found)
            high = max(d["high"] for d in found)
            break
    return [{"patient_id": p, "res_type": rtype, "date_low": low, "date_high": high} for p in sorted(patients)]
