"""The front-door bench's own parts (bench/front_door.py), without the production processes:
the Procfile read as a process manager reads it, a process tree started, measured and stopped,
and the HTTP load (keep-alive clients, paced or not, failures counted)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from bench import front_door as fd


def test_the_procfile_lines_the_bench_runs_are_the_production_ones():
    assert "gunicorn config.wsgi -c config/gunicorn.py" in fd.procfile_command("web")
    assert "celery -A config worker" in fd.procfile_command("worker")
    with pytest.raises(LookupError):
        fd.procfile_command("no-such-process")


def test_the_layout_defaults_are_read_from_the_procfile_and_gunicorn_config(monkeypatch):
    for name in (*fd.Layout.KEYS, "FRONT_WORKER_INSTANCES"):
        monkeypatch.delenv(name, raising=False)
    described = fd.Layout(Path("/nonexistent")).describe()
    assert described["web_processes"] >= 1 and described["web_threads"] >= 1
    assert described["worker_pool"] in ("prefork", "solo", "threads")
    assert described["worker_concurrency"] >= 1 and described["worker_instances"] == 1
    monkeypatch.setenv("WORKER_POOL", "solo")
    monkeypatch.setenv("WEB_THREADS", "3")
    described = fd.Layout(Path("/nonexistent")).describe()
    assert described["worker_pool"] == "solo" and described["web_threads"] == 3


def test_a_process_tree_is_measured_and_stopped_whole(tmp_path):
    procfile = tmp_path / "Procfile"
    # A parent whose child burns CPU, in a session of its own like bin/own-session's.
    procfile.write_text("spin: setsid sh -c 'while :; do :; done' & wait\n")
    process = fd.Process("spin", {"PATH": "/usr/bin:/bin"}, tmp_path / "spin.log", procfile)
    try:
        deadline = time.monotonic() + 10
        while len(process.tree()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        everyone = process.tree()
        assert len(everyone) >= 2
        before = process.cpu()
        time.sleep(0.5)
        assert process.cpu() > before
    finally:
        process.stop()
    assert not [p for p in everyone if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


class _Created(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn's gthread workers answer
    seen: list[dict] = []
    status = 201

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"body": body, "key": self.headers.get("Idempotency-Key")})
        self.send_response(type(self).status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def server():
    _Created.seen, _Created.status = [], 201
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Created)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_the_load_sends_the_asked_number_of_creates_with_keys(server):
    out = fd.load(server, "tkn", 4, resource="room", total=40, idempotency_key=True)
    assert out["requests"] == 40 and out["failures"] == 0
    assert len(_Created.seen) == 40
    assert len({s["key"] for s in _Created.seen}) == 40
    assert {s["body"]["resource"] for s in _Created.seen} == {"room"}
    assert out["p50_ms"] <= out["p95_ms"]


def test_a_paced_load_keeps_its_rate(server):
    out = fd.load(server, "tkn", 5, resource="room", total=20, rate=40)
    # 20 requests at 40/s: about half a second, not a burst.
    assert out["requests"] == 20 and 0.35 <= out["wall_s"] <= 2.0


def test_an_answer_other_than_201_is_a_failure(server):
    _Created.status = 400
    out = fd.load(server, "tkn", 2, resource="room", total=6)
    assert out["failures"] == 6 and out["first_failures"][0].startswith("400")
