"""The registry of business rules checked on every write, whoever writes (portal, SMART app, EHR, transaction).

Each rule takes the open repository, the resource about to be stored and the caller's context and
raises a FhirError (usually Unprocessable, 422) to refuse the write.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..access.context import AccessContext

if TYPE_CHECKING:
    from ..storage.repository import Repository

Rule = Callable[["Repository", dict[str, Any], AccessContext], None]
RULES: dict[str, list[Rule]] = {}


def rule(resource_type: str) -> Callable[[Rule], Rule]:
    """Register a rule for one resource type."""
    def deco(fn: Rule) -> Rule:
        RULES.setdefault(resource_type, []).append(fn)
        return fn
    return deco


def check(repo: "Repository", resource: dict[str, Any], ctx: AccessContext) -> None:
    for fn in RULES.get(resource.get("resourceType", ""), []):
        fn(repo, resource, ctx)
