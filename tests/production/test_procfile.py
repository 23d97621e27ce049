"""The process layouts a deployment copies (the Procfile's per-queue workers, the example in
docs/production.md) consume every queue the production settings route tasks to: a queue that
no worker consumes holds its tasks forever (the webhook deliveries' queue once had none in
either layout, so a deployment that split its workers sent no webhook)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT

from .test_settings import GOOD

# Set per run by the test environment; a deployment that leaves them unset gets the defaults.
ROUTING = ("CELERY_QUEUE", "BOOKING_QUEUE_", "WEBHOOK_QUEUE", "DJANGO_", "CACHE_URL")


def production_queues() -> set[str]:
    """The queues of the production settings with their default names."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ROUTING)}
    env = {**env, **GOOD}
    script = (
        "from django.conf import settings\n"
        "for q in settings.CELERY_TASK_QUEUES: print('QUEUE', q.name)"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
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
