"""What callers get back from the FHIR service: a stored version, a write's outcome, a unit of work."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .storage.repository import Repository


@dataclass
class Stored:
    """A resource version as stored: the JSON text is served as is."""

    resource_type: str
    id: str
    version: int
    last_updated: str
    text: str

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    def json(self) -> dict[str, Any]:
        return json.loads(self.text)  # type: ignore[no-any-return]


@dataclass
class WriteResult:
    stored: Stored
    created: bool
    patients: set[str] = field(default_factory=set)  # whose compartment the written resource is in


@dataclass(frozen=True)
class UnitOfWork:
    """One atomic unit for another package: its own rows (`session`) and FHIR writes (`fhir`) commit together.

    Pass `fhir` to FhirService.create_in / update_in; add other rows to `session` (account code does both).
    """

    session: "Session"
    fhir: "Repository"
