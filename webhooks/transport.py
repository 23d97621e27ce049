"""One HTTP POST to a receiver, to the address that was checked (webhooks.addresses), with a
connect timeout, a deadline for the whole answer, and only the first bytes of the answer read."""

from __future__ import annotations

import contextlib
import http.client
import math
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

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
    started_at: float  # when the attempt began (time.time())

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _Deadline:
    """A socket whose reads end at `deadline` (time.monotonic()) in all, not each read after
    the socket's timeout: a receiver that drips its answer a byte at a time cannot hold a drain
    past the attempt's timeout. http.client reads through the socket's recv_into."""

    deadline = math.inf

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no whole answer before the deadline")
        if remaining != math.inf:  # no deadline set: the socket's own timeout
            self.settimeout(remaining)  # type: ignore[attr-defined]
        return super().recv_into(*args, **kwargs)  # type: ignore[misc]


class _DeadlineSocket(_Deadline, socket.socket):
    pass


class _DeadlineSSLSocket(_Deadline, ssl.SSLSocket):
    pass


def _connect(address: str, port: int, timeout: float | None) -> socket.socket:
    raw = socket.create_connection((address, port), timeout)
    sock = _DeadlineSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
    sock.settimeout(timeout)
    # As http.client's own connect does: it sends a request's headers and body in two writes,
    # which Nagle's algorithm would hold until the receiver's delayed ACK (40 ms) on a kept-alive
    # connection.
    with contextlib.suppress(OSError):  # a system without TCP_NODELAY
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address; the Host header keeps the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = _connect(self.address, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The same over TLS: the certificate is checked against the URL's host (SNI too)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        raw = _connect(self.address, self.port, self.timeout)
        context = ssl.create_default_context()
        context.sslsocket_class = _DeadlineSSLSocket  # documented for a subclass of SSLSocket
        self.sock = context.wrap_socket(raw, server_hostname=self.host)


class Sender:
    """POSTs to one URL, one request at a time, over one kept-alive connection to the address
    that was checked when the sender was made (a drain of an endpoint's deliveries uses one).
    Never raises for the receiver's sake: a refused address, a refused connection, a timeout
    or a broken answer is an Answer with an error."""

    def __init__(self, url: str, *, connect_timeout: float, timeout: float) -> None:
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.refused = ""
        try:
            self.scheme, self.host, self.port, self.path = addresses.parse(url)
            self.address = str(addresses.resolve(self.host, self.port))
        except addresses.ForbiddenAddress as exc:
            self.refused = f"refused: {exc}"

    def post(self, headers: dict[str, str], body: bytes) -> Answer:
        started, began = time.monotonic(), time.time()
        if self.refused:
            return Answer(None, "", self.refused[:500], 0.0, began)
        reused = self.conn is not None
        answer = self._post(headers, body, started, began)
        if reused and answer.status is None and answer.error.startswith(STALE):
            # The receiver closed the kept-alive connection before this request reached it
            # (an idle timeout): send it once more on a new connection.
            answer = self._post(headers, body, started, began)
        return answer

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _post(self, headers: dict[str, str], body: bytes, started: float, began: float) -> Answer:
        def answer(status: int | None, text: str = "", error: str = "") -> Answer:
            duration_ms = (time.monotonic() - started) * 1000
            return Answer(status, text, error[:500], duration_ms, began)

        deadline = started + self.timeout
        try:
            if self.conn is None:
                cls = _PinnedHTTPSConnection if self.scheme == "https" else _PinnedHTTPConnection
                self.conn = cls(self.host, self.port, self.address, self.connect_timeout)
                self.conn.connect()
            conn = self.conn
            sock = conn.sock  # http.client drops conn.sock once an answer says it closes
            assert isinstance(sock, (_DeadlineSocket, _DeadlineSSLSocket))
            sock.deadline = deadline
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            conn.request(
                "POST",
                self.path,
                body=body,
                headers={
                    **headers,
                    "content-type": "application/json",
                    "user-agent": "bookingops-webhooks/1",
                },
            )
            response = conn.getresponse()
            chunks: list[bytes] = []
            size, ended = 0, False
            while size < READ_AT_MOST:
                if response.isclosed():  # read to its end (Python 3.13 closes it there)
                    ended = True
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = response.read1(8192)
                if not chunk:
                    ended = True
                    break
                chunks.append(chunk)
                size += len(chunk)
            if ended and not response.will_close:
                response.close()  # read to its end: the connection serves the next request
            else:
                self.close()  # an answer not read to its end leaves the connection unusable
            text = b"".join(chunks)[:KEEP_BYTES].decode("utf-8", "replace")
            return answer(response.status, text)
        except TimeoutError:
            self.close()
            return answer(None, error=f"timed out after {self.timeout:g} s")
        except ConnectionRefusedError:
            self.close()
            return answer(None, error="connection refused")
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return answer(None, error=f"{type(exc).__name__}: {exc}")


# The errors of a kept-alive connection that the receiver had closed: the request may be sent
# again on a new one.
STALE = ("RemoteDisconnected", "BrokenPipeError", "ConnectionResetError")
