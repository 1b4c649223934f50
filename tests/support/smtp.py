"""A real SMTP server (aiosmtpd) on loopback that keeps what it receives for the tests to read."""
from __future__ import annotations

import email
import email.policy
import re
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from .postgres import free_port


@dataclass
class Received:
    to: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""

    def links(self) -> list[str]:
        return re.findall(r"https?://[^\s\"'<>]+", self.text + " " + self.html)


class _Handler:
    def __init__(self, box: list[Received]) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.box.append(Received(list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.port = free_port()
        self.controller = Controller(_Handler(self.messages), hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> "SmtpServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def wait_for(self, to: str, subject_contains: str = "", timeout: float = 15.0, after: int = 0) -> Received:
        """The newest message to `to` (after index `after`) whose subject contains the text."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for m in reversed(self.messages[after:]):
                if to.lower() in [t.lower() for t in m.to] and subject_contains.lower() in m.subject.lower():
                    return m
            time.sleep(0.05)
        raise AssertionError(f"no mail to {to} with {subject_contains!r}; got {[(m.to, m.subject) for m in self.messages]}")
