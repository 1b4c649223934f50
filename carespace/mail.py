"""Mail interface used by every package: `app.extensions["mailer"]` (implemented in carespace/mailer.py)."""
from __future__ import annotations

from typing import Any, Protocol


class Mailer(Protocol):
    """Queue mail in the outbox; it is delivered over SMTP after the caller's work commits."""

    def send(self, to: str, subject: str, text: str, *, html: str | None = None,
             links: list[str] | None = None, session: Any | None = None,
             headers: dict[str, str] | None = None) -> int:
        """Queue one mail (with `session`, inside the caller's transaction); returns the outbox id.

        `headers`: extra headers such as List-Unsubscribe (RFC 8058), stored with the mail.
        """
        ...

    def flush(self, timeout: float = 20.0) -> bool:
        """Deliver what is due now (used by commands before they exit)."""
        ...
