"""The table metadata of every package: what the migrations describe and `db upgrade` creates."""
from __future__ import annotations

import importlib

from sqlalchemy import MetaData

MODEL_MODULES = ("smart_auth.accounts.models", "smart_auth.oauth.models", "bundles.models", "carespace.models")


def metadatas() -> list[MetaData]:
    """The table metadata of every package (the composition root knows them all; a missing one is an error)."""
    from fhir_server import FhirBase

    out: list[MetaData] = [FhirBase.metadata]
    for module in MODEL_MODULES:
        md = importlib.import_module(module).Base.metadata
        if md not in out:
            out.append(md)
    return out
