"""Mail interface used by every package: `app.extensions["mailer"].send(...)` (outbox + SMTP).

The accounts work (issue 4) implements the outbox table, SMTP delivery after commit, retries with
backoff and `carespace outbox`.  Until then this module defines the interface only.
"""
from __future__ import annotations

from typing import Protocol


class Mailer(Protocol):
    """Queue a mail in the outbox; it is delivered after the caller's work commits."""

    def send(self, to: str, subject: str, text: str, *, html: str | None = None,
             links: list[str] | None = None) -> int:
        """Queue one mail (links listed for `carespace outbox`); returns the outbox id."""
        ...
