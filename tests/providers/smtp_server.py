"""A real SMTP server for the tests (aiosmtpd on 127.0.0.1, a free port): it keeps every message
it accepts, parsed, and misbehaves on demand: refuse (a 4xx reply), hang past the client's
timeout before accepting, or kill the sending process right after accepting its message (while
that process waits for the answer to QUIT, before it can record the message as sent)."""

from __future__ import annotations

import email
import os
import signal
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import psutil
import pytest
from aiosmtpd.controller import Controller

from devtools.harness import free_port


@dataclass
class SmtpServer:
    messages: list[Message] = field(default_factory=list)
    refuse: int = 0  # refuse this many messages (451) before accepting again
    hang: int = 0  # hang this many times at RCPT past the client's timeout
    kill_sender_after_accepting: int = 0  # kill the sending process this many times
    hang_seconds: float = 4.0
    killed: list[int] = field(default_factory=list)
    port: int = 0

    def delivered(self) -> list[tuple[str, str]]:
        return [(m["To"], m["Subject"]) for m in self.messages]

    # --- aiosmtpd handler hooks ---

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if self.hang:
            self.hang -= 1
            time.sleep(self.hang_seconds)  # blocks the server, as a stuck one does
        if self.refuse:
            self.refuse -= 1
            return "451 4.3.0 Mail server temporarily rejected message"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(email.message_from_bytes(envelope.original_content or b""))
        return "250 2.0.0 Ok: queued"

    async def handle_QUIT(self, server, session, envelope) -> str:
        if self.kill_sender_after_accepting:
            self.kill_sender_after_accepting -= 1
            self._kill_peer(session.peer[1])
        return "221 Bye"

    def _kill_peer(self, peer_port: int) -> None:
        """SIGKILL the local process whose socket is the other end of this session."""
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == peer_port and conn.pid and conn.pid != os.getpid():
                os.kill(conn.pid, signal.SIGKILL)
                self.killed.append(conn.pid)
                return


def start() -> tuple[Controller, SmtpServer]:
    handler = SmtpServer()
    handler.port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    return controller, handler


@pytest.fixture
def smtp_server(settings) -> Any:
    """A real SMTP server on a free port, and Django's SMTP backend pointed at it."""
    controller, server = start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_TIMEOUT = 3.0  # generous: a busy machine must not time out a healthy server
    yield server
    controller.stop()


def smtp_harness(request: pytest.FixtureRequest) -> Any:
    from bookings.providers.email import DjangoEmailSender

    from .implementations import Harness

    server: SmtpServer = request.getfixturevalue("smtp_server")

    def take_down() -> None:
        server.refuse = 1_000

    return Harness(DjangoEmailSender(), delivered=server.delivered, take_down=take_down)


def wait_for_messages(server: SmtpServer, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(server.messages) < count and time.monotonic() < deadline:
        time.sleep(0.05)
