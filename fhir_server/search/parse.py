"""Parse FHIR search query parameters into a SearchRequest (no SQL here)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import BadRequest
from ..r4.tables import resource_types, search_params

RESULT_PARAMS = {"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_cursor",
                 "_format", "_pretty", "_include:iterate", "_revinclude:iterate", "_contained",
                 "_containedType"}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MAX_COUNT = 1000
# `_has` and chained parameters each nest one inner query; deeper nesting overflows SQLite's parser (and is
# no search a person means), so it is refused with a 400 before any SQL is built.
MAX_NESTING = 3
DEFAULT_COUNT = 20


@dataclass
class Criterion:
    """One search parameter occurrence: name[:modifier][.chain]=v1,v2 (values are ORed)."""

    name: str
    ptype: str
    modifier: str | None
    values: list[str]
    chain: tuple[str, str, "Criterion"] | None = None  # (target type, chained param, criterion)
    has: tuple[str, str, "Criterion"] | None = None  # _has: (source type, reference param, criterion)


@dataclass
class Include:
    source: str
    param: str
    target: str | None
    iterate: bool


@dataclass
class SearchRequest:
    resource_type: str | None
    criteria: list[Criterion] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] | None = None
    total: str | None = None
    cursor: str | None = None
    ignored: list[str] = field(default_factory=list)


def split_values(raw: str) -> list[str]:
    """Split on unescaped commas (OR); `\\,` is a literal comma."""
    out, cur, i = [], "", 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) and raw[i + 1] in ",$|\\":
            cur += raw[i + 1]
            i += 2
            continue
        if ch == ",":
            out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    out.append(cur)
    return [v for v in out if v != ""]


def param_type(rtype: str, name: str) -> str | None:
    if name == "_id":
        return "token"
    if name == "_lastUpdated":
        return "date"
    spec = search_params().get(rtype, {}).get(name)
    return spec["type"] if spec else None


# Modifiers each parameter type accepts (reference parameters also take a target type, e.g. subject:Patient).
MODIFIERS = {"string": {"exact", "contains", "missing"}, "token": {"not", "text", "missing", "exact", "code"},
             "date": {"missing"}, "number": {"missing"}, "quantity": {"missing"}, "uri": {"below", "above", "missing"},
             "reference": {"missing", "identifier"}}


def _check_modifier(rtype: str, name: str, ptype: str, modifier: str, key: str) -> None:
    if not modifier or modifier in MODIFIERS.get(ptype, ()):
        return
    if ptype == "reference" and modifier in resource_types():
        targets = search_params().get(rtype, {}).get(name, {}).get("target") or []
        if not targets or modifier in targets:
            return
        raise BadRequest(f"{rtype}.{name} cannot refer to a {modifier}", expression=[key])
    raise BadRequest(f"Modifier :{modifier} is not supported on {ptype} parameter {name!r}", expression=[key])


def _nested(key: str, depth: int) -> int:
    """The depth of the inner query one more `_has` or chain opens; 400 past MAX_NESTING."""
    if depth >= MAX_NESTING:
        raise BadRequest(f"{key[:200]!r} nests _has and chained parameters more than {MAX_NESTING} levels deep; "
                         f"at most {MAX_NESTING} are supported", expression=[key[:200]])
    return depth + 1


def _criterion(rtype: str, key: str, raw: str, strict: bool, ignored: list[str], depth: int = 0) -> Criterion | None:
    if key.startswith("_has:"):
        inner_depth = _nested(key, depth)
        parts = key.split(":", 3)
        if len(parts) != 4 or parts[1] not in resource_types():
            raise BadRequest(f"Malformed _has parameter {key!r}; use _has:Type:reference:param=value")
        ref = search_params().get(parts[1], {}).get(parts[2])
        if not ref or ref["type"] != "reference" or (ref.get("target") and rtype not in ref["target"]):
            raise BadRequest(f"{parts[1]}.{parts[2]} is not a reference search parameter that can point at {rtype}",
                             expression=[key])
        inner = _criterion(parts[1], parts[3], raw, True, ignored, inner_depth)
        if inner is None:  # no value: ignored, as the same parameter without `_has` is
            return None
        return Criterion(name="_has", ptype="special", modifier=None, values=[], has=(parts[1], parts[2], inner))
    name, _, rest = key.partition(".")
    name, _, modifier = name.partition(":")
    ptype = param_type(rtype, name)
    if ptype is None:
        if strict:
            raise BadRequest(f"Unknown search parameter {name!r} for {rtype}", expression=[key])
        ignored.append(key)
        return None
    if rest:
        if ptype != "reference":
            raise BadRequest(f"Chaining is only allowed on reference parameters ({key})")
        targets = search_params()[rtype][name].get("target") or []
        target = modifier or (targets[0] if len(targets) == 1 else None)
        if target is None or target not in resource_types() or (targets and target not in targets):
            raise BadRequest(f"Chained parameter {key!r} needs a target type, e.g. {name}:Patient.{rest}")
        if "." in rest:
            raise BadRequest("Only one level of chaining is supported")
        inner = _criterion(target, rest, raw, True, ignored, _nested(key, depth))
        if inner is None:  # no value: ignored, as the parameter itself is
            return None
        return Criterion(name=name, ptype="reference", modifier=None, values=[], chain=(target, rest, inner))
    _check_modifier(rtype, name, ptype, modifier, key)
    values = split_values(raw)
    if modifier == "missing" and any(v not in ("true", "false") for v in values):
        raise BadRequest(f":missing takes true or false, not {raw!r}", expression=[key])
    if not values and modifier != "missing":
        return None
    return Criterion(name=name, ptype=ptype, modifier=modifier or None, values=values)


def parse(rtype: str | None, items: Iterable[tuple[str, str]], *, strict: bool = False) -> SearchRequest:
    """Build a SearchRequest from (key, value) pairs; unknown parameters fail only when strict."""
    req = SearchRequest(resource_type=rtype)
    for key, value in items:
        if "\x00" in key or "\x00" in value:
            raise BadRequest("Search parameters cannot hold NUL characters")
        if key in ("_count",):
            if not value.isdigit():
                raise BadRequest(f"_count must be a non-negative integer, not {value!r}", expression=["_count"])
            req.count = min(int(value), MAX_COUNT)
        elif key == "_sort":
            for part in value.split(","):
                part = part.strip()
                if part:
                    desc = part.startswith("-")
                    pname = part.lstrip("-")
                    if rtype and pname not in ("_id", "_lastUpdated") and param_type(rtype, pname) is None:
                        raise BadRequest(f"Unknown sort parameter {pname!r}", expression=["_sort"])
                    req.sort.append((pname, desc))
        elif key in ("_include", "_revinclude", "_include:iterate", "_revinclude:iterate"):
            inc = _include(value, key.endswith(":iterate"))
            (req.includes if key.startswith("_include") else req.revincludes).append(inc)
        elif key == "_summary":
            if value not in ("true", "false", "count", "text", "data"):
                raise BadRequest(f"_summary must be true, false, count, text or data, not {value!r}")
            req.summary = None if value == "false" else value
        elif key == "_elements":
            req.elements = [e.strip() for e in value.split(",") if e.strip()]
        elif key == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise BadRequest(f"_total must be none, estimate or accurate, not {value!r}", expression=["_total"])
            req.total = value
        elif key == "_cursor":
            req.cursor = value
        elif key in RESULT_PARAMS:
            continue
        elif rtype is None:
            if key == "_type" and any(t not in resource_types() for t in split_values(value)):
                raise BadRequest(f"_type names an unknown resource type: {value!r}", expression=["_type"])
            name, _, modifier = key.partition(":")
            if name in ("_id", "_lastUpdated"):  # the parameters common to every type
                if modifier and modifier not in MODIFIERS[param_type("", name) or ""] - {"missing"}:
                    raise BadRequest(f"Modifier :{modifier} is not supported on {name}", expression=[key])
                if split_values(value):
                    req.criteria.append(Criterion(name, param_type("", name) or "", modifier or None,
                                                  split_values(value)))
            elif key != "_type":
                if strict:
                    raise BadRequest(f"Unknown search parameter {key!r}")
                req.ignored.append(key)
        else:
            crit = _criterion(rtype, key, value, strict, req.ignored)
            if crit is not None:
                req.criteria.append(crit)
    return req


def _include(value: str, iterate: bool) -> Include:
    if value == "*":
        return Include("*", "*", None, iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3) or parts[0] not in resource_types():
        raise BadRequest(f"Malformed _include/_revinclude {value!r}; use Type:param[:TargetType]")
    if parts[1] != "*":
        spec = search_params().get(parts[0], {}).get(parts[1])
        if not spec or spec["type"] != "reference":
            raise BadRequest(f"{parts[0]}:{parts[1]} is not a reference search parameter")
    return Include(parts[0], parts[1], parts[2] if len(parts) == 3 else None, iterate)


def prefix_of(value: str) -> tuple[str, str]:
    """Split a comparison prefix (eq, gt, ...) from a date/number/quantity value."""
    if len(value) > 2 and value[:2] in PREFIXES and (value[2].isdigit() or value[2] in "-+."):
        return value[:2], value[2:]
    return "eq", value

