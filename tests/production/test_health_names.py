"""/health/ names every check the same way in every process (issue 15, item 10), so monitoring
can key on the names: no memory address (`Workers(app=<Celery bookingops at 0x7f...>)`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import Client

from tests.conftest import ROOT

pytestmark = pytest.mark.django_db

NAMES = {
    "Database(alias='default')",
    "Cache(alias='default')",
    "CoordinationCache()",
    "Broker()",
    "Workers()",
    "ProviderCircuits()",
}


def test_every_check_has_a_stable_name_in_json_text_and_openmetrics(settings):
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2
    report = Client().get("/health/", HTTP_ACCEPT="application/json").json()
    assert set(report) == NAMES
    text = Client().get("/health/?format=text").content.decode()
    assert {line.split(": ", 1)[0] for line in text.splitlines()} == NAMES
    metrics = Client().get("/health/?format=openmetrics").content.decode()
    assert 'check="Workers"' in metrics
    assert "0x" not in metrics and "<" not in metrics


def test_another_process_prints_the_same_names():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    env["HEALTH_WORKER_PING_TIMEOUT"] = "0.2"
    result = subprocess.run(
        [sys.executable, "manage.py", "health"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    printed = {line.split(": ", 1)[0] for line in result.stdout.splitlines() if ": " in line}
    assert printed == NAMES, result.stdout + result.stderr[-2000:]
