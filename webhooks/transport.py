"""One HTTP POST to a receiver, to the address that was checked (webhooks.addresses), with a
connect timeout, a deadline for the whole answer, and only the first bytes of the answer read."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass

from . import addresses

KEEP_BYTES = 1024  # of the answer, recorded with the attempt
READ_AT_MOST = 64 * 1024  # an answer longer than this is not read to its end


@dataclass(frozen=True)
class Answer:
    """The outcome of one attempt: a status code (None if no answer came) and what was read, or
    why there was no answer."""

    status: int | None
    body: str
    error: str
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address; the Host header keeps the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The same over TLS: the certificate is checked against the URL's host (SNI too)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = ssl.create_default_context().wrap_socket(raw, server_hostname=self.host)


def post(
    url: str, headers: dict[str, str], body: bytes, *, connect_timeout: float, timeout: float
) -> Answer:
    """POST `body` to `url`. Never raises for the receiver's sake: a refused address, a refused
    connection, a timeout or a broken answer is an Answer with an error."""
    started = time.monotonic()

    def answer(status: int | None, text: str = "", error: str = "") -> Answer:
        return Answer(status, text, error[:500], (time.monotonic() - started) * 1000)

    try:
        scheme, host, port, path = addresses.parse(url)
        address = addresses.resolve(host, port)
    except addresses.ForbiddenAddress as exc:
        return answer(None, error=f"refused: {exc}")
    cls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    conn = cls(host, port, str(address), connect_timeout)
    deadline = started + timeout
    try:
        conn.connect()
        sock = conn.sock  # http.client drops conn.sock once an answer says it closes
        assert sock is not None
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        conn.request(
            "POST",
            path,
            body=body,
            headers={
                **headers,
                "content-type": "application/json",
                "user-agent": "bookingops-webhooks/1",
            },
        )
        response = conn.getresponse()
        chunks: list[bytes] = []
        size = 0
        while size < READ_AT_MOST:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = response.read1(8192)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        text = b"".join(chunks)[:KEEP_BYTES].decode("utf-8", "replace")
        return answer(response.status, text)
    except TimeoutError:
        return answer(None, error=f"timed out after {timeout:g} s")
    except ConnectionRefusedError:
        return answer(None, error="connection refused")
    except (OSError, http.client.HTTPException) as exc:
        return answer(None, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
