"""A database or broker that is down or saturated: the API answers 503 in its error format with
Retry-After (the admin a 503 page), never a 500, and nothing is half written.

Against the Procfile's web process with the production settings, on a throwaway PostgreSQL
cluster that the test saturates (it takes every connection of a tiny `max_connections`) and
stops, and throwaway redis-servers for the broker and the cache (devtools/harness.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
import redis
import requests

from devtools.harness import PostgresCluster, RedisServer, create_database, free_port

from .servers import (
    Web,
    celery,
    migrate_and_seed,
    needs_servers,
    production_env,
    wait_for,
)

pytestmark = [pytest.mark.integration, needs_servers()]


def booking_body(n: int = 0) -> dict:
    check_in = date.today() + timedelta(days=10 + n)
    return {
        "resource": "garden-room",
        "check_in": check_in.isoformat(),
        "check_out": (check_in + timedelta(days=2)).isoformat(),
        "guest_name": "Grace Hopper",
        "guest_email": "grace@example.com",
        "payment_token": "tok_visa",
    }


def assert_unavailable_json(response: requests.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert body["message"] and body["fields"] == {}
    assert int(response.headers["Retry-After"]) > 0


def assert_unavailable_page(response: requests.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("text/html")
    assert int(response.headers["Retry-After"]) > 0


# Room for migrate, the web's two pools and the test's own checks; the test takes the rest.
MAX_CONNECTIONS = 10


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    with PostgresCluster(max_connections=MAX_CONNECTIONS) as pg:
        create_database(pg.url(), "bookings")
        yield pg


@pytest.fixture
def redis_servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    with RedisServer() as broker, RedisServer() as cache:
        yield broker, cache


def connect(pg: PostgresCluster) -> psycopg.Connection:
    return psycopg.connect(pg.url("bookings"), autocommit=True)


def exhaust(pg: PostgresCluster) -> list[psycopg.Connection]:
    """Open connections until the server refuses one with `too many clients`: it is saturated
    while the caller holds them."""
    held: list[psycopg.Connection] = []
    for _ in range(MAX_CONNECTIONS + 1):
        try:
            held.append(connect(pg))
        except psycopg.OperationalError as exc:
            assert "too many clients" in str(exc), exc
            return held
    raise AssertionError("the server accepted more connections than max_connections")


def create(web: Web, token: str, key: str, n: int = 0) -> requests.Response:
    return web.request(
        "POST", "/api/v1/bookings/", token, json=booking_body(n), headers={"Idempotency-Key": key}
    )


def count(pg: PostgresCluster, table: str) -> int:
    with connect(pg) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


def test_a_saturated_or_stopped_database_answers_503_with_retry_after_and_writes_nothing(
    postgres: PostgresCluster, redis_servers: tuple[RedisServer, RedisServer], tmp_path
):
    broker, cache = redis_servers
    env = production_env(postgres.url("bookings"), broker.url(), CACHE_URL=cache.url())
    tokens = migrate_and_seed(env)
    token = tokens["waiting-client"]

    # Saturated: every connection the server allows is taken before the web process asks.
    held = exhaust(postgres)
    web = Web(env, tmp_path)
    try:
        first_key = str(uuid.uuid4())
        assert_unavailable_json(create(web, token, first_key))
        assert_unavailable_json(web.get("/api/v1/resources/", token))
        # The admin: the session is read from the database (a middleware) -> handler500.
        assert_unavailable_page(web.get("/admin/", cookies={"sessionid": "x" * 32}))

        # Connections free again: the same key creates the booking, as a first request (the
        # refused one left no record of the key, and no booking).
        for conn in held:
            conn.close()
        response = wait_for(
            lambda: (r := create(web, token, first_key)).status_code == 201 and r,
            timeout=60,
            what="a create once the database has room again",
            pause=1,
        )
        assert "Idempotent-Replayed" not in response.headers
        assert count(postgres, "bookings_booking") == 1

        # Stopped: the pooled connections are dead, no new one can be opened.
        postgres.stop()
        second_key = str(uuid.uuid4())
        assert_unavailable_json(create(web, token, second_key, n=1))
        assert_unavailable_json(web.get("/api/v1/bookings/", token))
        assert_unavailable_page(web.get("/admin/", cookies={"sessionid": "y" * 32}))

        postgres.start()
        response = wait_for(
            lambda: (r := create(web, token, second_key, n=1)).status_code == 201 and r,
            timeout=60,
            what="a create once the database is back",
            pause=1,
        )
        assert "Idempotent-Replayed" not in response.headers
        assert count(postgres, "bookings_booking") == 2
        assert count(postgres, "sagas_saga") == 2
        assert count(postgres, "bookings_idempotencykey") == 2
    finally:
        web.stop()
    log = web.output()
    assert '"code": 500' not in log and "Internal Server Error" not in log, log[-3000:]
    assert "WORKER TIMEOUT" not in log


def test_with_the_broker_down_a_create_is_accepted_and_the_sweeper_sends_it_when_it_is_back(
    postgres: PostgresCluster, redis_servers: tuple[RedisServer, RedisServer], tmp_path
):
    """The booking, its saga and its first attempt are one statement in the database: the
    broker only rings the bell. A create while the broker is down is answered 201 at once
    (refusing it would make every Redis restart an API outage), and its first step is sent by
    the sweeper once the broker is back (its lease: the step's timeout, shortened here). Only
    when the cache is down too (the throttle counts there) is the answer 503."""
    broker, cache = redis_servers
    env = production_env(
        postgres.url("bookings"),
        broker.url(),
        CACHE_URL=cache.url(),
        SAGA_STEP_SETTINGS='{"booking.fraud_check": {"timeout": 1}}',
        SAGA_SWEEP_INTERVAL="1",
    )
    token = migrate_and_seed(env)["waiting-client"]
    web = Web(env, tmp_path)
    processes = [web]
    try:
        broker.stop()
        started = time.monotonic()
        response = create(web, token, str(uuid.uuid4()))
        assert response.status_code == 201, response.text
        assert time.monotonic() - started < 10
        booking = response.json()
        assert booking["state"] not in ("completed", "cancelled")

        broker.start()
        processes.append(celery(env, tmp_path, "worker", "--concurrency=1", "--loglevel=WARNING"))
        schedule = str(Path(tmp_path) / "beat-schedule")
        processes.append(celery(env, tmp_path, "beat", f"--schedule={schedule}"))
        wait_for(
            lambda: (
                web.get(f"/api/v1/bookings/{booking['id']}/", token).json()["state"] == "completed"
            ),
            timeout=90,
            what="the booking created while the broker was down, completed",
            pause=1,
        )

        # A failover's replica at the cache's address: the throttle's write answers READONLY.
        replica = redis.Redis.from_url(cache.url())
        replica.replicaof("127.0.0.1", free_port())
        assert_unavailable_json(create(web, token, str(uuid.uuid4()), n=1))
        replica.replicaof("NO", "ONE")
        cache.stop()
        assert_unavailable_json(create(web, token, str(uuid.uuid4()), n=1))
        assert count(postgres, "bookings_booking") == 1
    finally:
        for process in reversed(processes):
            process.stop()
    assert '"code": 500' not in web.output() and "Internal Server Error" not in web.output()
