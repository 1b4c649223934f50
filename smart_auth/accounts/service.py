"""The account services, composed side by side over one AccountCore (no inheritance between them).

    login          sign-in with email, password and date of birth; two-step codes
    signins        the server side of sign-in sessions: started, ended, all ended at once
    registrations  the registration link: password, or shared access accepted
    recovery       forgot password; turning two-step verification on and off
    invitations    the practice's invitations and the patient's Manage Users
    notifications  which "something new" mails a person gets; one-click unsubscribe

Every write happens in one unit of work (fhir_server.UnitOfWork), so FHIR resources, account rows and
the outbox mail commit together (or not at all).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from fhir_server import FhirService

from .core import AccountCore
from .invites import Invitations
from .login import Login
from .notifications import NotificationChoices, NotificationPeople
from .recovery import Recovery
from .registration import Registrations
from .signins import SignIns


class Accounts:
    """app.extensions["accounts"]: every account service of one app."""

    def __init__(self, fhir: FhirService, mailer: Any, audit_log: Any, base_url: str,
                 hooks: Mapping[str, Any], clock: Callable[[], float] = time.time, secret_key: bytes = b"") -> None:
        self.core = AccountCore(fhir, mailer, audit_log, base_url, hooks, clock, secret_key)
        self.people = NotificationPeople(secret_key)
        self.login = Login(self.core)
        self.signins = SignIns(self.core)
        self.registrations = Registrations(self.core)
        self.recovery = Recovery(self.core)
        self.invitations = Invitations(self.core)
        self.notifications = NotificationChoices(self.core, self.people)
