"""Fail closed (issue 15, items 2 and 8): a process started without DJANGO_SETTINGS_MODULE runs
the production settings (and refuses to start without their variables), production refuses
DJANGO_ALLOWED_HOSTS='*', and the demo data is refused under the production settings."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from devtools.harness import free_port
from tests.conftest import ROOT

# A deployment's environment, without DJANGO_SETTINGS_MODULE.
PRODUCTION = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
    "DJANGO_ALLOWED_HOSTS": "bookings.example.com",
    "DATABASE_URL": "postgres://bookings:secret@db.internal:5432/bookings",
    "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
    "DJANGO_SECURE_SSL_REDIRECT": "0",
    "STRIPE_API_KEY": "sk_test_fail_closed",
}
SHOW_SETTINGS = (
    "from django.conf import settings; print(settings.SETTINGS_MODULE, settings.DEBUG, "
    "settings.ALLOWED_HOSTS)"
)


def clean_environment(**env: str) -> dict[str, str]:
    """This process's environment without anything that chooses settings, plus `env`."""
    chosen = ("DJANGO_", "DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "COORDINATION_CACHE")
    base = {k: v for k, v in os.environ.items() if not k.startswith(chosen)}
    return {**base, **env}


def python(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "program",
    [
        ["-c", f"import config.wsgi; {SHOW_SETTINGS}"],
        ["-c", f"import config.asgi; {SHOW_SETTINGS}"],
        [
            "-c",
            f"from config.celery import app; app.loader.import_default_modules(); {SHOW_SETTINGS}",
        ],
        ["manage.py", "shell", "-c", SHOW_SETTINGS],
    ],
    ids=["wsgi", "asgi", "celery", "manage.py"],
)
def test_without_a_settings_module_every_entry_point_runs_production(program):
    result = python(*program, env=clean_environment(**PRODUCTION))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-3:] == [
        "config.settings.production",
        "False",
        "['bookings.example.com']",
    ]


@pytest.mark.parametrize("program", [["-c", "import config.wsgi"], ["manage.py", "check"]])
def test_without_a_settings_module_or_its_variables_nothing_starts_and_says_why(program):
    result = python(*program, env=clean_environment())
    assert result.returncode != 0
    assert "The environment variable DJANGO_SECRET_KEY is required" in result.stderr
    assert "DJANGO_SETTINGS_MODULE=config.settings.local" in result.stderr


def test_the_local_settings_run_when_asked_for_by_name():
    env = clean_environment(DJANGO_SETTINGS_MODULE="config.settings.local")
    result = python("manage.py", "shell", "-c", SHOW_SETTINGS, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-3:-1] == ["config.settings.local", "True"]


def get(url: str, host: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_gunicorn_started_without_a_settings_module_shows_no_debug_page_to_any_host():
    """The probe of the issue: gunicorn with the production variables but no
    DJANGO_SETTINGS_MODULE used to run DEBUG with ALLOWED_HOSTS=['*'], and its debug 404 page
    listed the URL patterns to any Host."""
    port = free_port()
    env = clean_environment(**PRODUCTION, WEB_BIND="127.0.0.1", PORT=str(port))
    env["WEB_CONCURRENCY"] = "1"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = get(f"http://127.0.0.1:{port}/no-such-page/", "bookings.example.com")
                break
            except (ConnectionError, urllib.error.URLError):
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "gunicorn did not answer"
                time.sleep(0.3)
        assert status == 404
        assert "URLconf" not in body and "admin/" not in body
        status, body = get(f"http://127.0.0.1:{port}/no-such-page/", "attacker.example")
        assert status == 400 and "URLconf" not in body
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


@pytest.mark.parametrize("hosts", ["*", "bookings.example.com,*", " * "])
def test_production_refuses_any_host(hosts):
    env = clean_environment(**{**PRODUCTION, "DJANGO_ALLOWED_HOSTS": hosts})
    result = python("manage.py", "check", env=env)
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS='*' is refused in production" in result.stderr


def test_seed_demo_is_refused_under_the_production_settings():
    env = clean_environment(**PRODUCTION, DJANGO_SETTINGS_MODULE="config.settings.production")
    result = python("manage.py", "seed_demo", env=env)
    assert result.returncode != 0
    assert "seed_demo is refused under config.settings.production" in result.stderr
    assert "admin" not in result.stdout
