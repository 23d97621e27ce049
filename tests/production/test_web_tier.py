"""`Prefer: wait` cannot take the web tier down or starve other clients.

The Procfile's web process (gunicorn, config/gunicorn.py) with the production settings, on a
throwaway PostgreSQL cluster and redis-server, and no Celery worker: the bookings never settle,
so every honoured wait runs to API_PREFER_WAIT_MAX."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import requests
from django.conf import settings

from devtools.harness import PostgresCluster, RedisServer, create_database

from .servers import (
    ROOT,
    Web,
    migrate_and_seed,
    needs_servers,
    production_env,
)


@pytest.fixture
def web(tmp_path) -> Iterator[tuple[Web, dict[str, str]]]:
    with PostgresCluster() as postgres, RedisServer() as redis:
        create_database(postgres.url(), "bookings")
        # CACHE_URL left out: production then shares the broker's Redis (its documented default).
        env = production_env(postgres.url("bookings"), redis.url())
        tokens = migrate_and_seed(env)
        server = Web(env, tmp_path)
        try:
            yield server, tokens
        finally:
            server.stop()


@pytest.mark.integration
@needs_servers()
def test_ten_waiting_creates_kill_no_worker_and_leave_other_clients_reads_fast(web):
    server, tokens = web
    for _ in range(5):  # each process opens its pool
        assert server.get("/api/v1/resources/", tokens["reading-client"]).status_code == 200
    waits: list[dict[str, Any]] = []
    lock = threading.Lock()

    def wait_for_a_booking(n: int) -> None:
        check_in = date.today() + timedelta(days=20 + n)
        body = {
            "resource": "garden-room",
            "check_in": check_in.isoformat(),
            "check_out": (check_in + timedelta(days=1)).isoformat(),
            "guest_name": f"Guest {n}",
            "guest_email": f"guest{n}@example.com",
            "payment_token": "tok_visa",
        }
        started = time.monotonic()
        try:
            response = server.request(
                "POST",
                "/api/v1/bookings/",
                tokens["waiting-client"],
                json=body,
                headers={"Prefer": "wait=30", "Idempotency-Key": str(uuid.uuid4())},
                timeout=90,
            )
        except requests.RequestException as exc:  # a worker killed under the request
            with lock:
                waits.append({"status": repr(exc), "seconds": time.monotonic() - started})
            return
        with lock:
            waits.append(
                {
                    "status": response.status_code,
                    "type": response.headers.get("Content-Type"),
                    "applied": response.headers.get("Preference-Applied"),
                    "seconds": time.monotonic() - started,
                    "body": response.text,
                }
            )

    waiters = [threading.Thread(target=wait_for_a_booking, args=(n,)) for n in range(10)]
    for thread in waiters:
        thread.start()
    time.sleep(0.5)  # the waits have arrived

    # Another client reads, about ten times a second, for as long as the waits last.
    reads: list[float] = []
    while any(thread.is_alive() for thread in waiters):
        started = time.monotonic()
        response = server.get("/api/v1/resources/", tokens["reading-client"], timeout=90)
        reads.append(time.monotonic() - started)
        assert response.status_code == 200, response.text[:300]
        assert response.headers["Content-Type"] == "application/json"
        time.sleep(0.1)
    for thread in waiters:
        thread.join()

    assert len(waits) == 10
    for wait in waits:
        assert wait["status"] == 201, wait
        assert wait["type"] == "application/json", wait
    honoured = [w for w in waits if w["applied"]]
    declined = [w for w in waits if not w["applied"]]
    # Some waited the whole (capped) time, the others were answered at once (RFC 7240 lets a
    # server ignore a preference): the waits held at most half of the web's threads.
    assert honoured and declined, waits
    assert all(w["applied"] == f"wait={settings.API_PREFER_WAIT_MAX}" for w in honoured)
    assert all(w["seconds"] >= settings.API_PREFER_WAIT_MAX - 0.5 for w in honoured), honoured
    assert all(w["seconds"] < 5 for w in declined), declined

    assert len(reads) >= 50, len(reads)
    p95 = statistics.quantiles(reads, n=20)[-1]
    assert p95 < 0.2, f"reads p95 {p95 * 1000:.0f} ms while the waits lasted"

    log = server.output()
    assert "WORKER TIMEOUT" not in log and "SIGKILL" not in log, log[-3000:]
    booted = re.findall(r"Booting worker with pid", log)
    assert len(booted) == len(set(re.findall(r"Booting worker with pid: (\d+)", log)))
    assert len(booted) == int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1)), log


def gunicorn_check(**env: str) -> subprocess.CompletedProcess[str]:
    """`gunicorn --check-config` with the web process's config and `env`."""
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.py",
         "--check-config"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k not in ("WEB_TIMEOUT", "PORT")},
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


def test_gunicorn_refuses_to_start_when_the_longest_wait_is_not_well_below_its_timeout():
    refused = gunicorn_check(API_PREFER_WAIT_MAX="25", WEB_TIMEOUT="30")
    assert refused.returncode != 0
    assert "API_PREFER_WAIT_MAX=25 must be at least 10 s below WEB_TIMEOUT=30" in (
        refused.stdout + refused.stderr
    )
    assert gunicorn_check(API_PREFER_WAIT_MAX="25", WEB_TIMEOUT="40").returncode == 0


def test_gunicorn_checks_the_same_default_wait_as_the_settings():
    """config/gunicorn.py cannot import the settings (it runs in the arbiter, before Django):
    it repeats their default, and this keeps the two equal."""
    env = {k: v for k, v in os.environ.items() if k not in ("API_PREFER_WAIT_MAX", "WEB_TIMEOUT")}
    read = (
        "import json, runpy; c = runpy.run_path('config/gunicorn.py'); "
        "print(json.dumps({k: c[k] for k in "
        "('PREFER_WAIT_MAX', 'WAIT_MARGIN', 'timeout', 'worker_class', 'threads')}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", read], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    config = json.loads(done.stdout)
    assert config["PREFER_WAIT_MAX"] == settings.API_PREFER_WAIT_MAX
    assert config["PREFER_WAIT_MAX"] + config["WAIT_MARGIN"] <= config["timeout"]
    assert config["worker_class"] == "gthread" and config["threads"] >= 2


def test_web_processes_are_not_recycled_unless_asked():
    """A recycled process loses its keep-alive clients to the others for good (see
    config/gunicorn.py): recycling is off unless WEB_MAX_REQUESTS asks for it."""
    read = (
        "import json, runpy; c = runpy.run_path('config/gunicorn.py'); "
        "print(json.dumps([c['max_requests'], c['max_requests_jitter']]))"
    )

    def recycling(**extra: str) -> list[int]:
        env = {k: v for k, v in os.environ.items() if k != "WEB_MAX_REQUESTS"} | extra
        done = subprocess.run(
            [sys.executable, "-c", read], cwd=ROOT, env=env, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        return json.loads(done.stdout)

    assert recycling() == [0, 0]
    assert recycling(WEB_MAX_REQUESTS="5000") == [5000, 500]
