"""The CapabilityStatement: capability_statement.json completed at run time."""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

from ..r4.dates import now_instant

SecurityHook = Callable[[dict[str, Any]], None]
BULK = "http://hl7.org/fhir/uv/bulkdata"
BULK_CAPABILITY = f"{BULK}/CapabilityStatement/bulk-data"


@lru_cache(maxsize=1)
def _template() -> dict[str, Any]:
    text = resources.files("fhir_server").joinpath("capability_statement.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def capability_statement(base_url: str, version: str, security: SecurityHook | None = None) -> dict[str, Any]:
    """The statement with url, software, implementation and date filled in for this server."""
    cs = copy.deepcopy(_template())
    stamp, _ = now_instant()
    cs["url"] = f"{base_url}/metadata"
    cs["date"] = stamp
    cs["software"] = {"name": "CareSpace", "version": version}
    cs["implementation"] = {"description": "CareSpace patient portal FHIR server", "url": base_url}
    _bulk_data(cs)
    if security is not None:
        security(cs["rest"][0])
    return cs


def _bulk_data(cs: dict[str, Any]) -> None:
    """Bulk Data Access 2.0 (hl7.org/fhir/uv/bulkdata/CapabilityStatement-bulk-data.html): $export at the
    system, Patient and Group levels."""
    cs["instantiates"] = [*cs.get("instantiates", []), BULK_CAPABILITY]
    rest = cs["rest"][0]
    rest["operation"] = [*rest.get("operation", []),
                         {"name": "export", "definition": f"{BULK}/OperationDefinition/export"}]
    for res in rest["resource"]:
        if res["type"] in ("Patient", "Group"):
            kind = res["type"].lower()
            res["operation"] = [*res.get("operation", []),
                                {"name": "export", "definition": f"{BULK}/OperationDefinition/{kind}-export"}]
