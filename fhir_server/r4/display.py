"""Human-readable text of common FHIR data types, shared by the portal, bundles and the composition root."""
from __future__ import annotations

from typing import Any


def concept_text(value: Any) -> str:
    """Text of a CodeableConcept or Coding (text, else display, else code), a string, or a list of those."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(t for t in (concept_text(v) for v in value) if t)
    if isinstance(value, dict):
        if value.get("text"):
            return str(value["text"])
        for c in value.get("coding", []) or []:
            if c.get("display") or c.get("code"):
                return str(c.get("display") or c.get("code"))
        if value.get("display") or value.get("code"):
            return str(value.get("display") or value.get("code"))
    return ""


def human_name(resource: dict[str, Any], with_prefix: bool = True) -> str:
    """Display name of a Patient, Practitioner, RelatedPerson or Organization ("Dr. Maya Chen")."""
    if isinstance(resource.get("name"), str):
        return str(resource["name"])
    for name in resource.get("name", []) or []:
        prefix = name.get("prefix", []) if with_prefix else []
        text = name.get("text") or " ".join([*prefix, *name.get("given", []), name.get("family", "")]).strip()
        if text:
            return str(text)
    return ""
