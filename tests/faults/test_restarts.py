"""The broker (Redis or RabbitMQ) and PostgreSQL restarted while sagas are queued, running and
waiting for retries. Every saga must still end, with each effect once.

Only throwaway servers are restarted (devtools/harness.py: a `redis-server`, a RabbitMQ node or
an `initdb` cluster of the test's own, on free ports), never the machine's. The workers and the
client side (restart_scenario.py, a process of its own: it books, then settles and checks the
invariants) point at the throwaway server; the rest is the suite's (its test database for the
broker scenarios, its broker for PostgreSQL's). Each scenario runs where the suite tests that
kind of server: Redis's when CELERY_BROKER_URL is Redis, RabbitMQ's when it is AMQP,
PostgreSQL's when DATABASE_URL is PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis
from django.conf import settings
from django.db import connection

from devtools import harness

from ..conftest import ARTIFACTS, ON_POSTGRES, ROOT

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BROKER = settings.CELERY_BROKER_URL
EXPECTED = {("completed", ""): 24, ("cancelled", "unavailable"): 6}
# The scenario's cards spend retries on purpose: tok_flaky's first two holds fail, and so do
# tok_void_flaky's first two voids. A restart can cost a step in flight one more attempt (a
# sandbox provider keeps its ledger in the restarted database), so these steps get room for it
# beyond what the cards spend; otherwise a saga may rightly end as failed or parked, and which
# one depends only on when the restart came.
RETRY_ROOM = {
    "booking.preauthorize": {"max_attempts": 5},
    "booking.preauthorize.compensation": {"max_attempts": 5},
}


def scenario(name: str, env: dict[str, str], restart: Callable[[], None]) -> dict:
    """Run restart_scenario.py with `env`, call `restart` once its sagas are under way, and
    return what it found."""
    log_path = ARTIFACTS / f"restart-{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.restart_scenario"],
            cwd=ROOT,
            env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": "config.settings.test"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        lines = iter(proc.stdout.readline, "")
        ready = next((line for line in lines if line.startswith("READY")), None)
        assert ready, f"the scenario stopped before its sagas ran:\n{log_path.read_text()}"
        restart()
        proc.stdin.write("restarted\n")
        proc.stdin.flush()
        result = next((line for line in lines if line.startswith("RESULT ")), None)
        assert result, f"the scenario ended without a result:\n{log_path.read_text()}"
        return json.loads(result.removeprefix("RESULT "))
    finally:
        proc.kill()
        proc.wait(10)


@contextmanager
def supervised(worker: harness.Worker) -> Iterator[None]:
    """Start `worker` again whenever it exits, as a deployment's process manager does
    (systemd's Restart=always, a PaaS). A Celery worker can die of a broker restart: with tasks
    unacknowledged when the Redis connection drops, kombu 5.7.0 (with Celery 5.7.0) closes the
    channel, restores those messages through a connection it has just released, and fails in
    `Channel._connparams` ("'NoneType' object has no attribute 'hostname'", the family of
    celery/kombu#582), which Celery takes as an unrecoverable error. The sagas must still end."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            if worker.proc is not None and worker.proc.poll() is not None:
                worker.start(wait=False)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(5)


def check(result: dict) -> None:
    states = {(state, reason): n for state, reason, n in result["states"]}
    assert states == EXPECTED, states
    assert result["broken"] is None, result["broken"]


def suite_env() -> dict[str, str]:
    return {
        "DATABASE_URL": harness.database_url(connection.settings_dict),
        "CELERY_BROKER_URL": BROKER,
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "SAGA_STEP_SETTINGS_OVERRIDES": json.dumps(RETRY_ROOM),
    }


def suite_servers() -> dict[str, object]:
    """What changes when the suite's own Redis or PostgreSQL restarts: its run id, its start."""
    seen: dict[str, object] = {}
    if BROKER.startswith("redis://"):
        client = redis.Redis.from_url(BROKER)
        seen["redis"] = client.info("server")["run_id"]
        client.close()
    if ON_POSTGRES:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_postmaster_start_time()")
            seen["postgres"] = cursor.fetchone()[0]
    return seen


@pytest.fixture(autouse=True)
def _suite_servers_untouched(transactional_db) -> Iterator[None]:
    before = suite_servers()
    yield
    assert suite_servers() == before, "a fault test restarted the suite's own server"


@pytest.fixture
def redis_server() -> Iterator[harness.RedisServer]:
    with harness.RedisServer() as server:
        yield server


@pytest.fixture
def rabbitmq_node() -> Iterator[harness.RabbitMQNode]:
    with harness.RabbitMQNode() as node:
        yield node


@pytest.fixture
def postgres_cluster() -> Iterator[harness.PostgresCluster]:
    with harness.PostgresCluster() as cluster:
        yield cluster


@pytest.mark.skipif(not BROKER.startswith("redis://"), reason="the broker is not Redis")
@pytest.mark.skipif(not shutil.which("redis-server"), reason="no redis-server to run")
def test_redis_restarted_while_sagas_are_queued_and_retrying(redis_server, start_worker):
    # The broker and both caches on the throwaway Redis, as CI puts them on one server.
    env = {
        **suite_env(),
        "CELERY_BROKER_URL": redis_server.url(0),
        "CACHE_URL": redis_server.url(1),
        "COORDINATION_CACHE_URL": redis_server.url(2),
    }
    # Named for its scenario: its log (test-artifacts/worker-restart-redis-<pid>.log) is not
    # overwritten by a later test's worker.
    worker = start_worker("restart-redis", concurrency=2, extra_env=env)
    # Redis keeps nothing on disk here: every queued message and every retry is lost.
    with supervised(worker):
        check(scenario("redis", env, redis_server.restart))


@pytest.mark.skipif(not BROKER.startswith("amqp://"), reason="the broker is not RabbitMQ")
@pytest.mark.skipif(not harness.RabbitMQNode.available(), reason="no rabbitmq-server to run")
def test_rabbitmq_restarted_while_sagas_are_queued_and_retrying(rabbitmq_node, start_worker):
    env = {**suite_env(), "CELERY_BROKER_URL": rabbitmq_node.url()}
    start_worker("restart-rabbitmq", concurrency=2, extra_env=env)
    check(scenario("rabbitmq", env, rabbitmq_node.restart))


@pytest.mark.skipif(not ON_POSTGRES, reason="the database is not PostgreSQL")
@pytest.mark.skipif(not (harness.PG_BIN / "initdb").exists(), reason="no initdb to run")
def test_postgresql_restarted_while_workers_are_running(postgres_cluster, start_worker):
    database = harness.create_database(postgres_cluster.url(), "bookingops")
    harness.migrate(database, settings="config.settings.test")
    env = {**suite_env(), "DATABASE_URL": database}
    start_worker("restart-postgresql", concurrency=2, extra_env=env)
    check(scenario("postgresql", env, postgres_cluster.restart))
