"""Generate fhir_server/capability_statement.json from the packaged R4 tables and what the server implements.

Run after changing interactions or the tables (`make tables`); tests check that everything listed
works and that the server supports nothing it does not list.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server.r4.tables import resource_types, search_params  # noqa: E402
from fhir_server.search.parse import RESULT_PARAMS  # noqa: E402
from fhir_server.service import APPEND_ONLY  # noqa: E402

INTERACTIONS = ["read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type"]
CHANGES = {"update", "delete"}  # refused on the append-only types
SEARCH_DOC = {"token": "system|code, :not :text :missing", "string": "starts-with, :exact :contains :missing",
              "date": "prefixes eq ne gt lt ge le sa eb ap", "reference": "Type/id, id, absolute url, chaining",
              "quantity": "[prefix]number|system|code", "number": "[prefix]number", "uri": ":below :above"}


def build() -> dict:  # type: ignore[type-arg]
    resources = []
    for rtype in sorted(resource_types()):
        params = [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"}]
        for code, spec in sorted(search_params().get(rtype, {}).items()):
            if code in ("_id", "_lastUpdated"):
                continue
            params.append({"name": code, "definition": spec["url"], "type": spec["type"],
                           "documentation": SEARCH_DOC.get(spec["type"], "")})
        res = {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": c} for c in INTERACTIONS if not (rtype in APPEND_ONLY and c in CHANGES)],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "local"],
            "searchInclude": ["*"] + sorted(f"{rtype}:{c}" for c, s in search_params().get(rtype, {}).items()
                                            if s["type"] == "reference"),
            "searchRevInclude": ["*"],
            "searchParam": params,
        }
        if rtype in APPEND_ONLY:  # the audit trail: created and read, never changed or removed (405)
            res.update({"updateCreate": False, "conditionalUpdate": False, "conditionalDelete": "not-supported"})
        if rtype == "Patient":
            res["operation"] = [{"name": "everything",
                                 "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]
        resources.append(res)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "publisher": "CareSpace",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json", "application/json"],
        "rest": [{
            "mode": "server",
            "documentation": "Search result parameters: " + ", ".join(sorted(p for p in RESULT_PARAMS
                                                                             if not p.startswith("_contained"))),
            "resource": resources,
            # GET [base]/Patient/[id]/[type]: a search within one patient's compartment
            "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "search-system"},
                            {"code": "history-system"}],
            "searchParam": [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"},
                            {"name": "_type", "type": "token"}],
        }],
    }


def main() -> int:
    out = ROOT / "fhir_server" / "capability_statement.json"  # the package's own file (ships in the wheel)
    out.write_text(json.dumps(build(), indent=1, sort_keys=False) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
