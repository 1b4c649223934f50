"""Generate fhir_server/r4/data/*.json from the official R4 artefacts (../shared/fhir-r4, or the repository's copy).

The installed product never reads ../shared at run time: this committed script turns the R4 JSON
schema, the SearchParameter bundle and the Patient CompartmentDefinition into compact tables that
ship inside the `fhir_server` package.  Run it with `make tables` after the artefacts change.
`--src` takes a folder or a .tar.xz of one; without it, ../shared/fhir-r4 when it exists beside the
checkout, else tests/data/fhir-r4.tar.xz (the same files, which the tests use).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED_SRC = ROOT.parent / "shared" / "fhir-r4"
PACKED_SRC = ROOT / "tests" / "data" / "fhir-r4.tar.xz"
OUT = ROOT / "fhir_server" / "r4" / "data"

PRIMITIVE_JSON = {"string", "number", "boolean"}


def _ref_name(prop: dict[str, Any]) -> str | None:
    ref = prop.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


# The shipped fhir.schema.json is a vendor build of the R4 schema: it adds non-R4 resource types
# (AccessPolicy, Bot, Project, ...) and elements (Meta.project/author/account/compartment,
# Reference.resource).  R4's own list of resource types is the Patient CompartmentDefinition's
# (every R4 type appears there) plus Parameters; the extra elements are dropped here.
NON_R4_ELEMENTS = {"Meta": ("project", "author", "account", "compartment"), "Reference": ("resource",)}


def build_types(schema: dict[str, Any], r4_resources: list[str]) -> dict[str, Any]:
    """Reduce the R4 JSON schema to {primitives, complex, resources} the validator walks."""
    defs = schema["definitions"]
    listed = {_ref_name(x) for x in defs["ResourceList"]["oneOf"]}
    resources = sorted(r for r in r4_resources if r in listed)
    primitives: dict[str, Any] = {}
    complex_: dict[str, Any] = {}
    for name, d in defs.items():
        if name == "ResourceList":
            continue
        if "properties" not in d:
            primitives[name] = {"t": d.get("type", "string"), "re": d.get("pattern")}
            continue
        props: dict[str, list[Any]] = {}
        for pname, p in d["properties"].items():
            is_array = p.get("type") == "array"
            item = p["items"] if is_array else p
            if "const" in item:
                props[pname] = ["const", 0, item["const"]]
                continue
            tname = _ref_name(item)
            enum = item.get("enum")
            if tname is None and enum is not None:
                tname = "code"
            if tname is None:
                tname = _inline_primitive(pname, item, defs)
            props[pname] = [tname, 1 if is_array else 0] + ([enum] if enum else [])
        for extra in NON_R4_ELEMENTS.get(name, ()):
            props.pop(extra, None)
            props.pop("_" + extra, None)
        complex_[name] = {"p": props, "r": d.get("required", [])}
    vendor = listed - set(resources)
    complex_ = {k: v for k, v in complex_.items() if k not in vendor and not any(
        k.startswith(t) and k != t and k[len(t):len(t) + 1].isupper() for t in vendor)}
    primitives.setdefault("integer64", {"t": "string", "re": r"^[0]|[-+]?[1-9][0-9]*$"})
    return {"primitives": primitives, "complex": complex_, "resources": resources}


def add_r4_cardinality(types: dict[str, Any]) -> None:
    """Add the required elements the R4 JSON schema cannot express, from fhirclient's R4 models.

    The schema lists only required complex elements (a required primitive may arrive as `_status`
    alone, and a required choice such as MedicationRequest.medication[x] has no single key), so
    Observation.status or Extension.url would pass unchecked.  fhirclient's models are generated from
    the R4 4.0.1 StructureDefinitions and flag every 1..x element; a required choice is recorded
    as `name[x]`.  fhirclient is a development dependency (`pip install -e .[test]`), as is this script.
    """
    from fhirclient.models.fhirelementfactory import FHIRElementFactory

    done: set[str] = set()

    def walk(schema_name: str, model: Any) -> None:
        if schema_name in done or schema_name not in types["complex"]:
            return
        done.add(schema_name)
        spec = types["complex"][schema_name]
        required = set(spec["r"])
        for _name, js, typ, _is_list, of_many, not_optional in model.elementProperties():
            if not_optional:
                required.add(f"{of_many}[x]" if of_many else js)
            child = spec["p"].get(js)
            if child and child[0] in types["complex"] and hasattr(typ, "elementProperties"):
                walk(child[0], typ())
        spec["r"] = sorted(r for r in required if r.endswith("[x]") or r in spec["p"])

    for rtype in types["resources"]:
        walk(rtype, FHIRElementFactory.instantiate(rtype, None))


def _inline_primitive(pname: str, item: dict[str, Any], defs: dict[str, Any]) -> str:
    """Name the primitive of an inline schema (choice elements such as valueDateTime)."""
    for prim, d in defs.items():
        if "properties" not in d and prim[0].islower() and pname.endswith(prim[0].upper() + prim[1:]):
            return prim
    for prim, d in defs.items():
        if "properties" not in d and d.get("pattern") == item.get("pattern") and d.get("type") == item.get("type"):
            return prim
    return "xhtml" if not item else item.get("type", "string")


# ---- FHIRPath (the subset the R4 search parameters use) -> concrete JSON key paths ----

_CAST = re.compile(r"^\((.+?) as (\w+)\)(.*)$")


def _split_union(expr: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "|" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return [p for p in parts if p]


def _tokenize(frag: str) -> tuple[str, list[tuple[str, Any]]] | None:
    """Split `Type.a.b.where(...)` into the root type and steps; None when unsupported."""
    cast_tail = None
    m = _CAST.match(frag)
    if m:
        frag, cast_tail = m.group(1) + ".as(" + m.group(2) + ")", m.group(3)
        frag += cast_tail
    frag = re.sub(r"\s+as\s+(\w+)$", r".as(\1)", frag)
    steps: list[tuple[str, Any]] = []
    pieces = re.findall(r"[A-Za-z_]\w*(?:\([^()]*(?:\([^()]*\))?[^()]*\))?(?:\[\d+\])?", frag)
    if not pieces or ".".join(pieces) != frag:
        return None
    root, rest = pieces[0], pieces[1:]
    for piece in rest:
        if piece.startswith("as(") or piece.startswith("ofType("):
            steps.append(("as", piece[piece.index("(") + 1 : -1]))
        elif piece.startswith("where("):
            inner = piece[6:-1]
            m2 = re.fullmatch(r"resolve\(\) is (\w+)", inner)
            m3 = re.fullmatch(r"(\w+)\s*=\s*'([^']*)'", inner)
            if m2:
                steps.append(("target", m2.group(1)))
            elif m3:
                steps.append(("filter", [m3.group(1), m3.group(2)]))
            else:
                return None
        elif "(" in piece:
            return None
        else:
            m4 = re.fullmatch(r"(\w+)\[(\d+)\]", piece)
            if m4:
                steps.append(("elem", m4.group(1)))
                steps.append(("index", int(m4.group(2))))
            else:
                steps.append(("elem", piece))
    return root, steps


def _resolve(types: dict[str, Any], root: str, steps: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Expand element steps against the schema, choosing concrete choice-type keys."""
    complex_ = types["complex"]
    branches: list[dict[str, Any]] = [{"keys": [], "type": root, "filter": None, "targets": None}]
    for i, (kind, arg) in enumerate(steps):
        nxt: list[dict[str, Any]] = []
        for b in branches:
            if kind == "elem":
                props = complex_.get(b["type"], {}).get("p", {})
                cast = steps[i + 1][1] if i + 1 < len(steps) and steps[i + 1][0] == "as" else None
                if arg in props:
                    nxt.append({**b, "keys": b["keys"] + [arg], "type": props[arg][0]})
                    continue
                for pname, spec in props.items():
                    if pname.startswith(arg) and pname[len(arg) : len(arg) + 1].isupper():
                        suffix = pname[len(arg) :]
                        if cast and suffix.lower() != cast.lower():
                            continue
                        nxt.append({**b, "keys": b["keys"] + [pname], "type": spec[0]})
            elif kind == "as":
                if b["type"].lower() == arg.lower() or b["type"] == "Reference":
                    nxt.append(b)
                elif arg in ("Quantity",) and b["type"] in ("Age", "Duration", "SimpleQuantity"):
                    nxt.append(b)
            elif kind == "target":
                nxt.append({**b, "targets": (b["targets"] or []) + [arg]})
            elif kind == "filter":
                nxt.append({**b, "filter": arg})
            elif kind == "index":
                nxt.append({**b, "keys": b["keys"] + [arg]})
        branches = nxt
    return branches


def build_search_params(types: dict[str, Any], bundles: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Per resource type: search code -> {type, paths, targets}; plus the expressions skipped."""
    resources = types["resources"]
    table: dict[str, dict[str, Any]] = {r: {} for r in resources}
    skipped: list[str] = []
    for bundle in bundles:
        for entry in bundle["entry"]:
            sp = entry["resource"]
            code, ptype, bases = sp["code"], sp["type"], sp["base"]
            expr = sp.get("expression")
            if ptype in ("composite", "special") or not expr:
                skipped.append(f"{sp['id']}: {ptype} {expr}")
                continue
            bases = resources if bases in (["Resource"], ["DomainResource"]) else bases
            for frag in _split_union(expr):
                if "exists()" in frag:
                    root = frag.split(".", 1)[0]
                    base_elem = frag.split(".")[1]
                    paths = [{"keys": [k], "type": v[0], "filter": None, "targets": None, "exists": True}
                             for k, v in complex_props(types, root).items() if k.startswith(base_elem)]
                    _add(table, root, code, ptype, paths, sp)
                    continue
                parsed = _tokenize(frag)
                if parsed is None:
                    skipped.append(f"{sp['id']}: {frag}")
                    continue
                root, steps = parsed
                roots = resources if root in ("Resource", "DomainResource") else [root]
                if root not in types["complex"] and root not in ("Resource", "DomainResource"):
                    if len(bases) == 1 and root[:1].islower():  # `name | alias`: paths relative to the base
                        roots, steps = bases, [("elem", root)] + steps
                    else:
                        skipped.append(f"{sp['id']}: {frag}")
                        continue
                for r in roots:
                    if r not in table:
                        continue
                    paths = _resolve(types, r, steps)
                    if not paths:
                        skipped.append(f"{sp['id']}: {frag} (no element on {r})")
                        continue
                    _add(table, r, code, ptype, paths, sp)
    return {k: v for k, v in table.items()}, skipped


def complex_props(types: dict[str, Any], name: str) -> dict[str, Any]:
    return types["complex"].get(name, {}).get("p", {})


def _add(table: dict[str, Any], rtype: str, code: str, ptype: str, paths: list[dict[str, Any]], sp: dict[str, Any]) -> None:
    if rtype not in table:
        return
    entry = table[rtype].setdefault(code, {"type": ptype, "paths": [], "target": sp.get("target") or [],
                                           "url": sp.get("url")})
    for p in paths:
        compact = [p["keys"], p["type"], p["filter"], p["targets"]] + ([1] if p.get("exists") else [])
        if compact not in entry["paths"]:
            entry["paths"].append(compact)


def build_compartment(comp: dict[str, Any]) -> dict[str, list[str]]:
    return {r["code"]: r["param"] for r in comp["resource"] if r.get("param")}


def build_summary(types: dict[str, Any]) -> dict[str, list[str]]:
    """Top-level elements kept by _summary=true, per resource type.

    The R4 JSON schema does not mark summary elements; fhir.resources' R4B models do, and R4B
    matches R4 for them.  Types R4B dropped fall back to id, meta and the required elements.
    """
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError:  # pragma: no cover - fhir.resources is a hard dependency
        get_fhir_model_class = None
    out: dict[str, list[str]] = {}
    for rtype in types["resources"]:
        keep = {"id", "meta", "implicitRules"} | {r for r in types["complex"][rtype]["r"] if not r.endswith("[x]")}
        try:
            model = get_fhir_model_class(rtype) if get_fhir_model_class else None
        except (KeyError, ValueError):
            model = None
        if model is not None:
            props = types["complex"][rtype]["p"]
            for name, field in model.model_fields.items():
                extra = field.json_schema_extra or {}
                if isinstance(extra, dict) and extra.get("summary_element_property") and name in props:
                    keep.add(name)
        out[rtype] = sorted(keep)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=SHARED_SRC if SHARED_SRC.is_dir() else PACKED_SRC,
                    help="folder (or .tar.xz) of the R4 artefacts")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.src.is_file():
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(args.src, "r:xz") as tar:
            tar.extractall(tmp, filter="data")
            return generate(Path(tmp), args.out)
    return generate(args.src, args.out)


def generate(src: Path, out: Path) -> int:
    """Write the tables from the artefacts in `src` into `out`."""
    schema = json.loads((src / "fhir.schema.json").read_text())
    comp_json = json.loads((src / "compartmentdefinition-patient.json").read_text())
    types = build_types(schema, [r["code"] for r in comp_json["resource"]] + ["Parameters"])
    add_r4_cardinality(types)
    bundles = [json.loads((src / f).read_text()) for f in ("search-parameters.json",)]
    params, skipped = build_search_params(types, bundles)
    comp = build_compartment(comp_json)
    out.mkdir(parents=True, exist_ok=True)
    dump = {"separators": (",", ":"), "sort_keys": True}
    (out / "r4_types.json").write_text(json.dumps(types, **dump))  # type: ignore[arg-type]
    (out / "search_params.json").write_text(json.dumps(params, **dump))  # type: ignore[arg-type]
    (out / "compartment_patient.json").write_text(json.dumps(comp, **dump))  # type: ignore[arg-type]
    summary = build_summary(types)
    (out / "summary_elements.json").write_text(json.dumps(summary, **dump))  # type: ignore[arg-type]
    version = (src / "version.info").read_text()
    (out / "SOURCE.txt").write_text(
        "Generated by scripts/gen_fhir_tables.py from the HL7 FHIR R4 artefacts (CC0).\n" + version
        + "\nSkipped search parameter expressions (composite, special, or beyond the FHIRPath subset):\n"
        + "\n".join(sorted(skipped)) + "\n")
    n = sum(len(v) for v in params.values())
    print(f"{len(types['resources'])} resource types, {n} (type, search parameter) pairs, {len(skipped)} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
