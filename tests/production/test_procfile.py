"""The process layouts a deployment copies (the Procfile's per-queue workers, the example in
docs/production.md) consume every queue the production settings route tasks to: a queue that
no worker consumes holds its tasks forever (the webhook deliveries' queue once had none in
either layout, so a deployment that split its workers sent no webhook)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
import standardwebhooks

from devtools.harness import PostgresCluster, RedisServer, create_database
from tests.conftest import ROOT

from ..webhooks.receiver import Receiver
from .servers import Process, Web, migrate_and_seed, needs_servers, procfile_command, production_env
from .test_settings import GOOD, manage


def production_queues() -> set[str]:
    """The queues of the production settings, with their default names."""
    script = (
        "from django.conf import settings\n"
        "for q in settings.CELERY_TASK_QUEUES: print('QUEUE', q.name)"
    )
    result = manage("shell", "-c", script, env=GOOD)
    assert result.returncode == 0, result.stderr
    return {line.split()[1] for line in result.stdout.splitlines() if line.startswith("QUEUE ")}


def consumed(commands: list[str]) -> set[str]:
    """The queues the Celery worker commands among `commands` consume (-Q)."""
    queues: set[str] = set()
    for command in commands:
        if "celery -A config worker" in command:
            match = re.search(r"-Q\s+(\S+)", command)
            assert match, f"a worker of a split layout without -Q: {command}"
            queues |= set(match.group(1).split(","))
    return queues


def test_the_production_settings_route_to_these_queues():
    """The queues the layouts below must cover; a new one must be added to them."""
    assert production_queues() == {
        "sagas", "fraud", "payments", "inventory", "notifications", "webhooks",
    }  # fmt: skip


def test_the_procfiles_per_queue_workers_consume_every_queue():
    lines = (ROOT / "Procfile").read_text().splitlines()
    split = [line for line in lines if re.match(r"^worker_\w+:", line)]
    assert consumed(split) == production_queues()


def test_the_example_layout_of_the_production_docs_consumes_every_queue():
    text = (ROOT / "docs" / "production.md").read_text()
    # Its commands, with their continuation lines joined.
    commands = re.sub(r"\\\n\s*", " ", text).splitlines()
    assert consumed(commands) == production_queues()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


SPLIT = ["worker_fraud", "worker_payments", "worker_inventory", "worker_notifications",
         "worker_webhooks"]  # fmt: skip


@pytest.mark.integration
@needs_servers()
def test_the_procfiles_split_workers_complete_a_booking_and_deliver_its_webhooks(
    tmp_path, receiver
):
    """The Procfile's web and its five per-queue workers, as a process manager starts them, with
    the production settings, on a throwaway PostgreSQL and Redis: a client subscribes through
    the API, books, and receives booking.created and booking.completed, signed."""
    with PostgresCluster() as postgres, RedisServer() as redis:
        create_database(postgres.url(), "bookings")
        env = production_env(
            postgres.url("bookings"), redis.url(), METRICS_ROOT=str(tmp_path),
            WEBHOOK_REQUIRE_HTTPS="0", WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32",
        )  # fmt: skip
        token = migrate_and_seed(env)["waiting-client"]
        web = Web(env, tmp_path)
        workers = [
            Process(["sh", "-c", procfile_command(name)], env, tmp_path / f"{name}.log")
            for name in SPLIT
        ]
        try:
            answer = web.request(
                "POST", "/api/v1/webhook-endpoints/", token,
                json={"url": receiver.url, "event_types": []},
            )  # fmt: skip
            assert answer.status_code == 201, answer.text
            secret = answer.json()["secret"]
            check_in = date.today() + timedelta(days=30)
            answer = web.request(
                "POST", "/api/v1/bookings/", token,
                json={
                    "resource": "garden-room", "check_in": check_in.isoformat(),
                    "check_out": (check_in + timedelta(days=2)).isoformat(),
                    "guest_name": "Split Layout", "guest_email": "split@example.com",
                    "payment_token": "tok_visa",
                },
            )  # fmt: skip
            assert answer.status_code == 201, answer.text
            booking = answer.json()["id"]
            received = receiver.wait_for(2, timeout=120)
            verifier = standardwebhooks.Webhook(secret)
            events = [verifier.verify(r.body, r.headers) for r in received]
            assert [(e["type"], e["subject"]) for e in events] == [
                ("booking.created", booking),
                ("booking.completed", booking),
            ]
        finally:
            for process in [*workers, web]:
                process.stop()
