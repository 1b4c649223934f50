"""What callers get back from the FHIR service: a stored version as JSON text, and a write's outcome."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


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
