"""The broker (Redis or RabbitMQ) and PostgreSQL restarted while sagas are queued, running and
waiting for retries. Every saga must still end, with each effect once.

These restart the machine's real servers with the same commands `.ci/run` uses to start them,
so they run only against 127.0.0.1 and only where the server in question is the one under
test (the broker selected by CELERY_BROKER_URL; PostgreSQL when DATABASE_URL points at it)."""

import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from bookings.models import Booking

from ..conftest import ON_POSTGRES
from ..factories import ResourceFactory
from ..helpers import assert_invariants, book, settle_with_sweeper, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BROKER = settings.CELERY_BROKER_URL


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def answers(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0


def restart_redis() -> None:
    run("redis-cli", "-h", "127.0.0.1", "shutdown", "nosave")
    run(
        "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
        "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
        "--logfile", "/var/log/redis/ci.log",
    )  # fmt: skip
    wait_for(lambda: answers("redis-cli", "-h", "127.0.0.1", "ping"), timeout=30, what="redis")


def restart_rabbitmq() -> None:
    run("rabbitmqctl", "stop_app")
    run("rabbitmqctl", "start_app")
    wait_for(lambda: answers("rabbitmq-diagnostics", "-q", "ping"), timeout=60, what="rabbitmq")


def restart_postgresql() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast")
    wait_for(lambda: answers("pg_isready", "-h", "127.0.0.1", "-q"), timeout=60, what="postgres")
    connection.close()  # this process's connection died with the server


def traffic(n: int = 30) -> list[Booking]:
    """A mix that keeps sagas queued, running and waiting for retries at the same time."""
    room = ResourceFactory(code="garden-room", capacity=n)
    sold_out = ResourceFactory(code="sold-out", capacity=0)
    bookings = []
    for i in range(n):
        token = ("tok_visa", "tok_flaky", "tok_void_flaky")[i % 3]
        resource = sold_out if i % 5 == 4 else room
        bookings.append(book(resource, token=token, email=f"g{i}@example.com"))
    return bookings


def some_done(bookings: list[Booking], at_least: int) -> bool:
    return (
        Booking.objects.filter(pk__in=[b.pk for b in bookings], state__in=Booking.TERMINAL).count()
        >= at_least
    )


def check(bookings: list[Booking]) -> None:
    settled = settle_with_sweeper(bookings, timeout=240)
    states = Counter((b.state, b.cancellation_reason) for b in settled)
    assert states == {("completed", ""): 24, ("cancelled", "unavailable"): 6}, states
    assert_invariants(bookings)


@pytest.mark.skipif(not BROKER.startswith("redis://127.0.0.1"), reason="the broker is not Redis")
@pytest.mark.skipif(not shutil.which("redis-server"), reason="no redis-server to restart")
def test_redis_restarted_while_sagas_are_queued_and_retrying(start_worker):
    start_worker("w", concurrency=2)
    bookings = traffic()
    wait_for(lambda: some_done(bookings, 3), timeout=60, what="the first sagas to finish")
    # Redis keeps nothing on disk here: every queued message and every retry is lost.
    restart_redis()
    check(bookings)


@pytest.mark.skipif(not BROKER.startswith("amqp://"), reason="the broker is not RabbitMQ")
@pytest.mark.skipif(not shutil.which("rabbitmqctl"), reason="no rabbitmqctl to restart with")
def test_rabbitmq_restarted_while_sagas_are_queued_and_retrying(start_worker):
    start_worker("w", concurrency=2)
    bookings = traffic()
    wait_for(lambda: some_done(bookings, 3), timeout=60, what="the first sagas to finish")
    restart_rabbitmq()
    check(bookings)


@pytest.mark.skipif(not ON_POSTGRES, reason="the database is not PostgreSQL")
@pytest.mark.skipif(not shutil.which("pg_ctlcluster"), reason="no pg_ctlcluster")
def test_postgresql_restarted_while_workers_are_running(start_worker):
    start_worker("w", concurrency=2)
    bookings = traffic()
    wait_for(lambda: some_done(bookings, 3), timeout=60, what="the first sagas to finish")
    restart_postgresql()
    time.sleep(1)
    check(bookings)
