"""R4 validation of incoming resources: the one place that decides what "valid R4" means.

fhir.resources 8 ships R4B models only, so structural validation uses the exact R4 element model
generated from the official R4 JSON schema (fhir_server/r4/data/r4_types.json): element names,
types, cardinality (arrays vs single values, required elements), primitive formats and
required-binding codes.  Each problem becomes an OperationOutcome issue naming its element.
"""
from __future__ import annotations

import math
import re
from functools import cache
from typing import Any

from ..errors import BadRequest, Unprocessable
from .tables import r4_types, resource_types

MAX_ISSUES = 50
MAX_DEPTH = 100  # element nesting (dots in the path): deeper is an attack or an error, never a record
_INTEGERS = {"integer", "positiveInt", "unsignedInt"}
_INT32 = (-(2**31), 2**31 - 1)
# FHIR strings hold no control characters but tab, CR and LF; JSON \u escapes can smuggle in lone surrogates.
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


@cache
def _pattern(name: str) -> re.Pattern[str] | None:
    rx = r4_types()["primitives"][name].get("re")
    return re.compile(rx) if rx else None


def _issue(path: str, msg: str, code: str = "structure") -> dict[str, Any]:
    return {"severity": "error", "code": code, "diagnostics": f"{path}: {msg}", "expression": [path]}


class _Walker:
    def __init__(self) -> None:
        types = r4_types()
        self.prims: dict[str, Any] = types["primitives"]
        self.complex: dict[str, Any] = types["complex"]
        self.resources = resource_types()
        self.issues: list[dict[str, Any]] = []

    def err(self, path: str, msg: str, code: str = "structure") -> None:
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(_issue(path, msg, code))

    def resource(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            self.err(path, "must be a JSON object holding a resource")
            return
        rtype = value.get("resourceType")
        if not isinstance(rtype, str) or rtype not in self.resources:
            self.err(path, f"unknown resourceType {rtype!r}", "not-supported")
            return
        self.complex_value(value, rtype, path or rtype, is_resource=True)

    def primitive(self, value: Any, tname: str, path: str, enum: list[str] | None) -> None:
        spec = self.prims[tname]
        jtype = spec.get("t")
        if tname == "xhtml" or jtype is None:
            if not isinstance(value, str):
                self.err(path, "must be a string")
            elif _BAD_CHARS.search(value):
                self.err(path, "holds a control character or an unpaired surrogate", "value")
            return
        if jtype == "boolean":
            if not isinstance(value, bool):
                self.err(path, f"must be a JSON boolean ({tname})")
            return
        if jtype == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.err(path, f"must be a JSON number ({tname})")
            elif (isinstance(value, float) and not math.isfinite(value)) or abs(value) > 1e300:
                self.err(path, f"must be a finite number ({tname})", "value")
            elif tname in _INTEGERS and (not isinstance(value, int) or not _INT32[0] <= value <= _INT32[1]
                                         or (tname == "positiveInt" and value < 1)
                                         or (tname == "unsignedInt" and value < 0)):
                self.err(path, f"must be a valid {tname} (32-bit)")
            return
        if not isinstance(value, str):
            self.err(path, f"must be a JSON string ({tname})")
            return
        if _BAD_CHARS.search(value):
            self.err(path, "holds a control character or an unpaired surrogate", "value")
            return
        rx = _pattern(tname)
        if rx is not None and not rx.match(value):
            self.err(path, f"{value[:40]!r} is not a valid {tname}", "value")
        elif enum is not None and value not in enum:
            self.err(path, f"{value[:40]!r} is not one of the allowed codes ({', '.join(enum[:12])})", "code-invalid")

    def value(self, value: Any, tname: str, path: str, enum: list[str] | None) -> None:
        if value is None:
            self.err(path, "null is not allowed")
        elif tname == "ResourceList":
            self.resource(value, path)
        elif tname in self.prims:
            self.primitive(value, tname, path, enum)
        elif tname in self.complex:
            self.complex_value(value, tname, path)
        else:
            self.err(path, f"unknown type {tname}")

    def complex_value(self, value: Any, tname: str, path: str, is_resource: bool = False) -> None:
        if path.count(".") > MAX_DEPTH:
            self.err(path[:200], f"nests more than {MAX_DEPTH} elements deep")
            return
        if not isinstance(value, dict):
            self.err(path, f"must be a JSON object ({tname})")
            return
        if not value:
            self.err(path, "empty objects are not allowed")
            return
        props = self.complex[tname]["p"]
        for key, item in value.items():
            spec = props.get(key)
            sub = f"{path}.{key}"
            if spec is None:
                self.err(sub, f"unknown element for {tname}")
                continue
            if spec[0] == "const":
                if item != spec[2]:
                    self.err(sub, f"must be {spec[2]!r}")
                continue
            tn, is_array = spec[0], spec[1]
            enum = spec[2] if len(spec) > 2 else None
            if is_array:
                if not isinstance(item, list) or not item:
                    self.err(sub, "must be a non-empty JSON array")
                    continue
                prim_array = tn in self.prims or key.startswith("_")
                for i, elem in enumerate(item):
                    if elem is None and prim_array:
                        continue
                    self.value(elem, tn, f"{sub}[{i}]", enum)
            elif isinstance(item, list):
                self.err(sub, "must be a single value, not an array")
            else:
                self.value(item, tn, sub, enum)
        for req in self.complex[tname]["r"]:
            if req.endswith("[x]"):  # a required choice: any one of its typed keys
                base = req[:-3]
                if not any(k.lstrip("_").startswith(base) and k.lstrip("_")[len(base):len(base) + 1].isupper()
                           for k in value):
                    self.err(f"{path}.{req}", "is required (one of its types)", "required")
            elif req not in value and f"_{req}" not in value:
                self.err(f"{path}.{req}", "is required", "required")


def validate_resource(resource: Any, expected_type: str | None = None) -> None:
    """Raise Unprocessable (422) with one issue per problem unless `resource` is valid R4."""
    if not isinstance(resource, dict):
        raise BadRequest("The body must be a JSON object holding a FHIR resource")
    rtype = resource.get("resourceType")
    if expected_type is not None and rtype != expected_type:
        raise BadRequest(f"resourceType {rtype!r} does not match the URL ({expected_type})",
                         expression=["resourceType"])
    walker = _Walker()
    walker.resource(resource, str(rtype) if rtype else "")
    if walker.issues:
        raise Unprocessable(walker.issues[0]["diagnostics"], issues=walker.issues)


def is_valid_id(value: str) -> bool:
    """True for a FHIR logical id ([A-Za-z0-9-.]{1,64})."""
    return bool(_ID.match(value))


_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
