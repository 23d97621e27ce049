"""make run's banner comes after the processes' start-up output (issue 18): `demo_info
--after-start` prints nothing until the web server's /health/ answers 200, and still prints, with
a note, when it never does."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(settings, tmp_path) -> None:
    settings.DEMO_DATA_ALLOWED = True
    settings.DATA_DIR = tmp_path
    call_command("seed_demo", stdout=io.StringIO())


class Health:
    """A stand-in web server: /health/ answers 503 (workers not up yet) `failures` times, then
    200 with `body`; it records when the banner's poller asked."""

    def __init__(self, failures: int, body: dict[str, str]) -> None:
        self.failures, self.body, self.requests = failures, body, 0
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                health.requests += 1
                ok = self.path == "/health/" and health.requests > health.failures
                payload = json.dumps(health.body).encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]


@pytest.fixture
def health() -> Iterator[Health]:
    server = Health(failures=2, body={"Workers()": "OK"})
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_the_banner_waits_until_health_answers_200(demo, health):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "demo_info", "--port", str(health.port), "--after-start", "30", stdout=out, stderr=err
    )
    assert health.requests == 3  # two 503s while the workers start, then the 200
    assert f"http://127.0.0.1:{health.port}/admin/" in out.getvalue()
    assert "curl -s -X POST" in out.getvalue()
    assert err.getvalue() == ""


def test_with_nothing_answering_the_banner_still_comes_with_a_note(demo, health):
    health.failures = 10_000
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "demo_info", "--port", str(health.port), "--after-start", "2.5", stdout=out, stderr=err
    )
    assert 2 <= health.requests <= 4
    assert "did not answer 200 within 2 s" in err.getvalue()
    assert "curl -s -X POST" in out.getvalue()


def test_once_make_run_is_gone_the_banner_gives_up_silently(demo, health):
    health.failures = 10_000
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names no process now
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    call_command(
        "demo_info",
        *("--port", str(health.port), "--after-start", "30", "--parent", str(gone.pid)),
        stdout=out,
        stderr=err,
    )
    assert time.monotonic() - started < 5
    assert out.getvalue() == "" and err.getvalue() == ""
