"""The per-request portal context: who is looking, at whose record, with what access, and names for display."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, request

from fhir_server import AccessContext, FhirError, FhirService, human_name
from smart_auth.accounts import session as auth

from .fhir_data import PortalError


@dataclass(frozen=True)
class Viewer:
    """The signed-in person, whose record they are looking at, and what they may do with it."""

    user: Any
    choice: auth.PatientChoice
    ctx: AccessContext

    @property
    def patient_id(self) -> str:
        return self.choice.patient_id

    @property
    def ref(self) -> str | None:
        return auth.fhir_user_ref(self.user, self.choice)

    @property
    def author(self) -> tuple[str | None, str]:
        return self.ref, str(self.user.name)


def viewer() -> Viewer:
    """The current viewer; a page explaining the situation when they may not see any record now."""
    user = auth.current_user()
    choice = auth.selected_patient()
    if user is None or choice is None:
        raise PortalError("You do not have access to a patient's record right now. If someone shared their "
                          "record with you, ask them to invite you again.", 403)
    return Viewer(user, choice, auth.portal_access(user, choice))


def fhir() -> FhirService:
    return current_app.extensions["fhir_service"]  # type: ignore[no-any-return]


def name_of(ref: str) -> str:
    """Display name of a person or app reference, looked up once per request (trusted, not audited)."""
    cache: dict[str, str] = request.environ.setdefault("carespace.names", {})
    if ref not in cache:
        name = ""
        if ref.startswith("client:"):
            lookup = current_app.extensions.get("client_name_lookup")
            name = str(lookup(ref[7:]) or "") if lookup else ""
        elif "/" in ref:
            rtype, rid = ref.split("/", 1)
            try:
                name = human_name(fhir().read(AccessContext.system("portal"), rtype, rid).json())
            except FhirError:
                name = ""
        cache[ref] = name
    return cache[ref]


class Names:
    """A lazy mapping reference -> display name for templates and services."""

    def get(self, ref: str, default: str = "") -> str:
        return name_of(ref) or default if ref else default


def same_site(url: str | None) -> str | None:
    """The path of a URL on this site (no open redirects)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.netloc and parts.netloc != request.host:
        return None
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
