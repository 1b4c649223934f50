"""The practice console at /practice: staff find and invite patients, post results and documents,
and answer messages.  Each module here is a service over FhirService (no Flask); views.py is the web."""
from __future__ import annotations


class FormError(Exception):
    """Field -> message for a form that cannot be accepted as filled in."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors
