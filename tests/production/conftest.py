"""Fixtures of the production-readiness tests: clean provider guards, free ports, and the
production JSON log format captured from this process."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from bookings.providers.guard import PROVIDERS, circuit
from config.logging import logging_config
from sandbox import outage


@pytest.fixture(autouse=True)
def clean_guards() -> Iterator[None]:
    """Circuits and outage flags live in the shared cache, which outlives a test."""

    def clean() -> None:
        for provider in PROVIDERS:
            circuit(provider).reset()
            outage.bring_up(provider)

    clean()
    yield
    clean()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JsonLines:
    """Log lines of this process rendered as production renders them (config/logging.py)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        formatter_conf = dict(logging_config("INFO", json=True)["formatters"]["structured"])
        factory = formatter_conf.pop("()")
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(factory(**formatter_conf))

    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]


@pytest.fixture
def json_logs() -> Iterator[JsonLines]:
    capture = JsonLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture.handler)
    root.setLevel(logging.INFO)
    yield capture
    root.removeHandler(capture.handler)
    root.setLevel(level)


def read_json_lines(text: str) -> list[dict[str, Any]]:
    """The log records of a worker's output, each line parsed as JSON. A worker's output also
    holds Celery's start-up banner and Python warnings, printed to the terminal, not logged: a
    log record is a line that starts with '{' (json.loads fails the test on a broken one)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
