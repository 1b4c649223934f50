"""The packaged R4 tables are R4, complete, reproducible from the R4 artefacts, and the statement matches them."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from fhir_server.r4.tables import compartment_params, r4_types, resource_types, search_params, summary_elements
from tests.conftest import ROOT
from tests.support.data import fhir_r4_dir
from tests.support.r4_minimal import r4_resource_types, required_elements


def _script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resource_types_are_exactly_r4_and_no_vendor_types() -> None:
    """The 146 R4 types of fhirclient's R4 models; none of the vendor types the shipped schema adds."""
    assert resource_types() == r4_resource_types()
    schema_types = set(json.loads((fhir_r4_dir() / "fhir.schema.json").read_text())["discriminator"]["mapping"])
    vendor = schema_types - r4_resource_types()
    assert {"Bot", "Project", "AccessPolicy", "ClientApplication"} <= vendor
    assert not vendor & resource_types()


def test_every_official_search_parameter_is_indexed_or_listed_as_skipped() -> None:
    """Each R4 SearchParameter of a supported type appears on each base, or in SOURCE.txt's skipped list."""
    bundle = json.loads((fhir_r4_dir() / "search-parameters.json").read_text())
    skipped = (ROOT / "fhir_server" / "r4" / "data" / "SOURCE.txt").read_text()
    missing = []
    for e in bundle["entry"]:
        sp = e["resource"]
        if sp["type"] in ("composite", "special") or not sp.get("expression"):
            continue
        bases = sorted(resource_types()) if sp["base"] in (["Resource"], ["DomainResource"]) else sp["base"]
        for base in bases:
            got = search_params().get(base, {}).get(sp["code"])
            if got is None and sp["id"] not in skipped:
                missing.append(f"{base}.{sp['code']}")
            elif got is not None:
                assert got["type"] == sp["type"], (base, sp["code"])
    assert missing == []
    assert sum(len(v) for v in search_params().values()) > 2400


def test_patient_compartment_is_the_official_definition() -> None:
    """compartment_params() is the R4 CompartmentDefinition's param list for every type."""
    comp = json.loads((fhir_r4_dir() / "compartmentdefinition-patient.json").read_text())
    for r in comp["resource"]:
        assert compartment_params(r["code"]) == r.get("param", []), r["code"]
    assert compartment_params("Observation") == ["subject", "performer"]
    assert compartment_params("Organization") == []


def test_required_elements_match_r4_cardinality() -> None:
    """Top-level required elements equal fhirclient's R4 1..x flags for every type (choices as name[x])."""
    complex_types = r4_types()["complex"]
    for rtype in sorted(resource_types()):
        table = sorted(r for r in complex_types[rtype]["r"] if r != "resourceType")
        assert table == [r for r in required_elements(rtype) if r != "resourceType"], rtype
    assert "status" in complex_types["Observation"]["r"] and "url" in complex_types["Extension"]["r"]


def test_summary_elements_follow_the_r4_summary_flags() -> None:
    """_summary=true keeps Patient's summary elements and drops narrative and non-summary ones."""
    patient = set(summary_elements()["Patient"])
    assert {"identifier", "active", "name", "telecom", "gender", "birthDate", "address", "id", "meta"} <= patient
    assert not patient & {"text", "contact", "photo", "communication", "extension", "contained"}
    assert {"status", "code", "subject"} <= set(summary_elements()["Observation"])


def test_committed_tables_are_what_the_generator_produces(tmp_path: Path) -> None:
    """Running scripts/gen_fhir_tables.py on the R4 artefacts (tests/data) reproduces the packaged data byte for byte."""
    _script("gen_fhir_tables").main(["--src", str(fhir_r4_dir()), "--out", str(tmp_path)])
    for name in ("r4_types.json", "search_params.json", "compartment_patient.json", "summary_elements.json"):
        assert (tmp_path / name).read_bytes() == (ROOT / "fhir_server" / "r4" / "data" / name).read_bytes(), name


def test_committed_capability_statement_is_what_the_generator_produces() -> None:
    """capability_statement.json is scripts/gen_capability.py's output for the current tables."""
    committed = json.loads((ROOT / "fhir_server" / "capability_statement.json").read_text())
    assert committed == _script("gen_capability").build()
