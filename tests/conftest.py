"""Fixtures. Integration tests start real Celery worker processes (prefork) against the broker
and database the suite runs on (PostgreSQL and Redis in CI, SQLite and the filesystem queue on a
laptop); nothing of the project is replaced there."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from django.conf import settings
from django.core.cache import caches
from django.db import connection

from bookings.providers import base as providers
from config.settings.base import cache_from_env
from devtools import harness

from .factories import ResourceFactory

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")

postgres_only = pytest.mark.skipif(
    not ON_POSTGRES, reason="row locks (SELECT FOR UPDATE) need PostgreSQL; SQLite serializes"
)


@pytest.fixture(autouse=True)
def _fresh_providers() -> Iterator[None]:
    """New provider instances, and no reading of their health kept from another test."""
    providers.reset_cache()
    caches["local"].clear()
    yield
    providers.reset_cache()
    caches["local"].clear()


@pytest.fixture
def resource(db) -> Any:
    return ResourceFactory(code="garden-room", capacity=3)


class Worker(harness.Worker):
    """A real `celery worker` process on the suite's broker, queue and test database (started at
    once), killed with its children when the test ends. `faults` installs the worker-side fault
    injection of tests/faults/injection.py; `pool` is Celery's (prefork, solo, threads)."""

    def __init__(
        self,
        name: str,
        *,
        concurrency: int = 2,
        faults: dict | None = None,
        queues: str | None = None,
        extra_env: dict | None = None,
        pool: str = "prefork",
    ) -> None:
        super().__init__(
            name,
            settings="config.settings.test",
            queues=queues or settings.CELERY_TASK_DEFAULT_QUEUE,
            env={
                "DATABASE_URL": harness.database_url(connection.settings_dict),
                "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
                "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
                "SAGA_FAULTS": json.dumps(faults or {}),
                **(extra_env or {}),
            },
            log_path=ARTIFACTS / f"worker-{name}.log",
            pool=pool,
            concurrency=concurrency,
        )
        self.log_path.unlink(missing_ok=True)
        self.start()


@pytest.fixture
def coordination_redis(settings) -> Iterator[harness.RedisServer]:
    """The coordination cache on a throwaway `redis-server` that a test may stop."""
    if not shutil.which("redis-server"):
        pytest.skip("no redis-server to run")
    with harness.RedisServer() as server:
        settings.CACHES = {**settings.CACHES, "coordination": cache_from_env(server.url(2))}
        yield server


@pytest.fixture
def start_worker(django_db_setup, django_db_blocker) -> Iterator[Any]:
    workers: list[Worker] = []

    def start(name: str = "w1", **kwargs: Any) -> Worker:
        worker = Worker(f"{name}-{os.getpid()}", **kwargs)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker) -> Iterator[Worker]:
    """One worker for a whole module of integration tests."""
    w = Worker(f"module-{os.getpid()}", concurrency=2)
    yield w
    w.stop()


@pytest.fixture(scope="session", autouse=True)
def _purge_test_queue() -> Iterator[None]:
    yield
    if not settings.CELERY_BROKER_URL.startswith("filesystem"):
        try:
            with current_app.connection_for_write() as conn:
                for queue in (settings.CELERY_TASK_DEFAULT_QUEUE, settings.WEBHOOK_QUEUE):
                    conn.default_channel.queue_delete(queue)
        except Exception as exc:  # the broker may be down after a fault test; nothing to clean
            print(f"could not delete the test queue: {exc}")
