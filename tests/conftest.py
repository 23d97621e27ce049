"""Fixtures. Integration tests start real Celery worker processes (prefork) against the broker
and database the suite runs on (PostgreSQL and Redis in CI, SQLite and the filesystem queue on a
laptop); nothing of the project is replaced there."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kombu.exceptions
import pytest
import redis.exceptions
from celery import current_app
from django.conf import settings
from django.db import connection

from bookings.providers import base as providers

from .factories import ResourceFactory

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")

postgres_only = pytest.mark.skipif(
    not ON_POSTGRES, reason="row locks (SELECT FOR UPDATE) need PostgreSQL; SQLite serializes"
)


@pytest.fixture(autouse=True)
def _fresh_providers() -> Iterator[None]:
    providers.reset_cache()
    yield
    providers.reset_cache()


@pytest.fixture
def resource(db) -> Any:
    return ResourceFactory(code="garden-room", capacity=3)


def _database_url() -> str:
    """The URL of the test database, for worker processes."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


class Worker:
    """A real `celery worker` process, killed with its children when the test ends."""

    def __init__(
        self,
        name: str,
        *,
        concurrency: int = 2,
        faults: dict | None = None,
        queues: str | None = None,
        extra_env: dict | None = None,
    ) -> None:
        self.name = name
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
            "SAGA_FAULTS": json.dumps(faults or {}),
            **(extra_env or {}),
        }
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"worker-{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--loglevel=WARNING",
                f"--concurrency={concurrency}",
                "--pool=prefork",
                f"--queues={queues or settings.CELERY_TASK_DEFAULT_QUEUE}",
                f"--hostname={name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # never leave a worker behind to steal the next tests' messages
            raise

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        node = f"{self.name}@{socket.gethostname()}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log_path.read_text()}")
            if settings.CELERY_BROKER_URL.startswith("filesystem"):
                # No broadcast on the filesystem transport: give the pool time to start.
                time.sleep(3)
                if self.proc.poll() is None:
                    return
            elif self._answers(node):
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker {self.name} not ready after {timeout}s")

    @staticmethod
    def _answers(node: str) -> bool:
        # A connection of its own each time: a broker restarted by a fault test leaves the
        # pooled ones dead.
        try:
            with current_app.connection_for_write() as conn:
                return bool(
                    current_app.control.ping(destination=[node], timeout=0.5, connection=conn)
                )
        except (OSError, kombu.exceptions.OperationalError, redis.exceptions.ConnectionError):
            return False

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once: no cleanup, no acknowledgement."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


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
                conn.default_channel.queue_delete(settings.CELERY_TASK_DEFAULT_QUEUE)
        except Exception as exc:  # the broker may be down after a fault test; nothing to clean
            print(f"could not delete the test queue: {exc}")
