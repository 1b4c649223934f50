"""What a committed unit of work wrote, handed to the hooks other packages register (FhirService.on_commit).

The hooks run after the database commit, once per unit of work, whoever wrote: a REST interaction, a
transaction or batch Bundle, the portal, the console or an in-process command. A hook sees each new
version with the version it replaced, so it can tell a new resource from a correction.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CommittedWrite:
    """One new version: the resource as stored and the text of the live version before it (None: new)."""

    resource_type: str
    id: str
    version: int
    resource: dict[str, Any]
    previous_text: str | None

    def previous(self) -> dict[str, Any] | None:
        """The live version this one replaced, or None when the resource is new (or re-created)."""
        return json.loads(self.previous_text) if self.previous_text else None


@dataclass(frozen=True)
class Commit:
    """Every version one unit of work wrote, in order; `notify` False for imports and demo data."""

    writes: tuple[CommittedWrite, ...]
    notify: bool = True


CommitHook = Callable[[Commit], None]

_WRITES_KEY = "fhir_committed_writes"
_QUIET_KEY = "fhir_committed_quiet"


def note_write(info: dict[str, Any], resource: dict[str, Any], previous_text: str | None) -> None:
    """Remember a version written in this unit of work (its session's `info`)."""
    info.setdefault(_WRITES_KEY, []).append(CommittedWrite(
        resource["resourceType"], resource["id"], int(resource["meta"]["versionId"]), resource, previous_text))


def mark_quiet(info: dict[str, Any]) -> None:
    """The unit's writer asked for no notifications (AccessContext.notify False)."""
    info[_QUIET_KEY] = True


def take(info: dict[str, Any]) -> Commit | None:
    """What the unit wrote, removed from `info` (None when it wrote nothing)."""
    writes = info.pop(_WRITES_KEY, None)
    quiet = info.pop(_QUIET_KEY, False)
    return Commit(tuple(writes), notify=not quiet) if writes else None
