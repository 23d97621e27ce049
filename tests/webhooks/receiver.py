"""A real HTTP receiver for the tests, in a thread of the test process: it records every request
(headers, body, time) and answers as told, request after request: a status code, "slow" (answers
nothing until the sender gives up), or, once stopped, nothing at all (connection refused).
With `keep_alive`, it speaks HTTP/1.1 and keeps connections open between requests (as most web
servers do); with `close_after_answer` too, it closes each one after its answer without saying
so (as a server does on an idle timeout)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time()
    answered: Any
    client_port: int = 0  # the sender's end of the connection

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """`plan`: what to answer to the 1st, 2nd... request (int status or "slow"); then `then`."""

    plan: list[Any] = field(default_factory=list)
    then: Any = 200
    slow_seconds: float = 6.0
    keep_alive: bool = False
    close_after_answer: bool = False
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if receiver.keep_alive else "HTTP/1.0"
            disable_nagle_algorithm = True  # headers and body leave in two writes

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    n = len(receiver.received)
                    answer = receiver.plan[n] if n < len(receiver.plan) else receiver.then
                    receiver.received.append(
                        Received(
                            dict(self.headers.items()),
                            body,
                            time.time(),
                            answer,
                            self.client_address[1],
                        )
                    )
                if answer == "slow":
                    time.sleep(receiver.slow_seconds)
                    answer = 200
                text = f"answered {answer}".encode()
                try:
                    self.send_response(answer)
                    self.send_header("content-type", "text/plain")
                    self.send_header("content-length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass  # the sender gave up first
                if receiver.close_after_answer:
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self._lock = threading.Lock()
        self._handler = Handler
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    def start(self) -> None:
        """Listen (again, on the same port once it has been chosen)."""
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Close the port: connections are refused until start()."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received)} of {count} requests after {timeout} s")
