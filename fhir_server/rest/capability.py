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
    if security is not None:
        security(cs["rest"][0])
    return cs
