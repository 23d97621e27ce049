"""Production settings: everything from the environment, a loud failure when a required value is
missing, and `check --deploy` clean when everything is given."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import ROOT

GOOD = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
    "DJANGO_ALLOWED_HOSTS": "bookings.example.com",
    "DATABASE_URL": "postgres://bookings:secret@db.internal:5432/bookings",
    "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
    "STRIPE_API_KEY": "sk_test_settings",
}


# Set per run by the test environment (its database, broker, cache and queue names): a
# production process here gets only what each test gives it, and the defaults otherwise.
TEST_RUN = ("DJANGO_", "CACHE_URL", "CELERY_QUEUE", "BOOKING_QUEUE_", "WEBHOOK_QUEUE")


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(TEST_RUN)}
    base = {k: v for k, v in base.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    base.pop("COORDINATION_CACHE_URL", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_without_any_warning_when_every_required_value_is_set():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=GOOD)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL"]
)
def test_production_refuses_to_start_without_a_required_value(missing):
    env = {k: v for k, v in GOOD.items() if k != missing}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert f"The environment variable {missing} is required" in result.stderr


@pytest.mark.parametrize(
    "override,message",
    [
        ({"DJANGO_SECRET_KEY": "short"}, "at least 50 random characters"),
        ({"DATABASE_URL": "sqlite:///db.sqlite3"}, "not SQLite"),
        ({"CELERY_BROKER_URL": "filesystem://"}, "Redis or RabbitMQ"),
        ({"CELERY_BROKER_URL": "amqp://guest@rabbit//"}, "CACHE_URL"),
    ],
)
def test_production_refuses_settings_that_cannot_work_on_several_machines(override, message):
    result = manage("check", env={**GOOD, **override})
    assert result.returncode != 0
    assert message in result.stderr


def test_rabbitmq_broker_with_a_redis_cache_is_accepted():
    env = {**GOOD, "CELERY_BROKER_URL": "amqp://guest@rabbit//", "CACHE_URL": "redis://r:6379/1"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("ttl", ["-1", "inf", "nan", "60"])
def test_a_provider_health_ttl_that_would_hide_an_open_circuit_refuses_to_start(ttl):
    result = manage("check", env={**GOOD, "BOOKING_PROVIDER_HEALTH_TTL": ttl})
    assert result.returncode != 0
    assert "BOOKING_PROVIDER_HEALTH_TTL" in result.stderr and "from 0 to 10" in result.stderr


@pytest.mark.parametrize("rate", ["", "10 per minute", "10/fortnight", "ten/minute", "10/mango"])
def test_a_throttle_rate_that_cannot_be_read_refuses_to_start(rate):
    """DRF would fail on it in every API request (a 500 each): refused at start-up instead."""
    result = manage("check", env={**GOOD, "API_THROTTLE_CLIENT": rate})
    assert result.returncode != 0
    assert "API_THROTTLE_CLIENT" in result.stderr and "<requests>/" in result.stderr
