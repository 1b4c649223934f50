"""Minimal valid instances of every R4 resource type, built from fhirclient's R4 models and the R4 JSON schema.

fhirclient (generated from the R4 4.0.1 StructureDefinitions) says which elements are required and
what type they have; the official JSON schema (tests/data/fhir-r4.tar.xz) gives required-binding codes.
Neither is the server's own table, so the server accepting these proves its R4 model independently.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
from functools import lru_cache
from typing import Any

import fhirclient.models as fhir_models
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.resource import Resource

from tests.support.data import fhir_r4_dir

PRIMITIVES: dict[str, Any] = {
    "string": "x", "code": "x", "id": "a1", "uri": "http://example.org/x", "url": "http://example.org/x",
    "canonical": "http://example.org/x", "oid": "urn:oid:1.2.3", "uuid": "urn:uuid:6b0e4e2c-6a4f-4c8b-9d1e-3f2a1b0c9d8e",
    "boolean": True, "integer": 1, "positiveInt": 1, "unsignedInt": 0, "decimal": 1.5, "date": "2020-01-01",
    "dateTime": "2020-01-01T10:00:00Z", "instant": "2020-01-01T10:00:00Z", "time": "10:00:00",
    "base64Binary": "aGk=", "markdown": "x", "xhtml": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
}
FILLER = {"extension": [{"url": "http://example.org/x", "valueString": "x"}]}


@lru_cache(maxsize=1)
def r4_resource_types() -> frozenset[str]:
    """Every resource type fhirclient's R4 models define (abstract Resource/DomainResource excluded)."""
    out = set()
    for info in pkgutil.iter_modules(fhir_models.__path__):
        if info.name.endswith("_tests"):
            continue
        module = importlib.import_module(f"fhirclient.models.{info.name}")
        for name, cls in vars(module).items():
            if isinstance(cls, type) and issubclass(cls, Resource) and getattr(cls, "resource_type", None) == name:
                out.add(name)
    return frozenset(out - {"Resource", "DomainResource"})


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return json.loads((fhir_r4_dir() / "fhir.schema.json").read_text())["definitions"]  # type: ignore[no-any-return]


def _value(js: str, prop: dict[str, Any], model_type: Any, depth: int) -> Any:
    prop = prop.get("items", prop)
    if "enum" in prop:
        return prop["enum"][0]
    inline = next((p for p in PRIMITIVES if js.endswith(p[0].upper() + p[1:])), "string")  # valueDateTime
    name = prop.get("$ref", "#/x/" + inline).rsplit("/", 1)[-1]
    if name in PRIMITIVES:
        return PRIMITIVES[name]
    if name == "Reference":
        return {"display": "x"}
    if name == "ResourceList":
        return {"resourceType": "Basic", "code": {"text": "x"}}
    return _fill(name, model_type(), depth + 1) or dict(FILLER)


def _fill(schema_name: str, model: Any, depth: int) -> dict[str, Any]:
    assert depth < 12, f"required elements recurse too deep at {schema_name}"
    props = _schema()[schema_name]["properties"]
    out: dict[str, Any] = {}
    chosen: set[str] = set()
    for _name, js, typ, is_list, of_many, not_optional in model.elementProperties():
        if not not_optional or js == "resourceType" or (of_many and of_many in chosen):
            continue
        if of_many:
            chosen.add(of_many)
        value = _value(js, props[js], typ, depth)
        out[js] = [value] if is_list else value
    return out


def minimal(rtype: str) -> dict[str, Any]:
    """The smallest valid R4 instance of `rtype` (every required element, nothing else)."""
    return {"resourceType": rtype, **_fill(rtype, FHIRElementFactory.instantiate(rtype, None), 0)}


def required_elements(rtype: str) -> list[str]:
    """Top-level required element names of `rtype` per fhirclient (choices as name[x])."""
    model = FHIRElementFactory.instantiate(rtype, None)
    return sorted({f"{m}[x]" if m else js for _n, js, _t, _l, m, req in model.elementProperties() if req})
