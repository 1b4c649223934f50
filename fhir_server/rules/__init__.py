"""Business rules on writes: each module registers the rules of its resource types with the registry.

`check` runs every rule of a resource's type inside the writer's unit of work (FhirService calls it
for every create and update, whatever the path).
"""
from __future__ import annotations

from . import documents, messages
from .registry import check, rule

__all__ = ["check", "documents", "messages", "rule"]
