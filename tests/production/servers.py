"""The Procfile's `web` process (gunicorn) and Celery processes with the production settings,
for the tests that stop, saturate or overload the servers under them (devtools/harness.py's
throwaway PostgreSQL clusters and redis-servers). Nothing here touches the machine's own
PostgreSQL, Redis or RabbitMQ; everything listens on 127.0.0.1 and is stopped when the test
ends."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.harness import PG_BIN, free_port

ROOT = Path(__file__).resolve().parent.parent.parent


def needs_servers() -> pytest.MarkDecorator:
    missing = [
        name
        for name, found in (
            ("initdb", (PG_BIN / "initdb").exists()),
            ("redis-server", shutil.which("redis-server")),
        )
        if not found
    ]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


def wait_for(predicate: Any, timeout: float, what: str, pause: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"{what}: not after {timeout} s")


def production_env(database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production process (docs/production.md, "Deployment")."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_", "CACHE_", "COORDINATION_", "DB_"))
        and k not in {"PORT", "SAGA_FAULTS", "PYTEST_CURRENT_TEST"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker_url,
        LOG_LEVEL="WARNING",
        # No SMTP server here: the confirmation e-mail goes nowhere, and the saga completes.
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        # The sandbox providers (tok_visa), as on a staging deployment: no Stripe here.
        BOOKING_ALLOW_SANDBOX="1",
        BOOKING_FRAUD_PROVIDER="sandbox.fraud.SandboxFraudScreening",
        BOOKING_PAYMENT_PROVIDER="sandbox.payments.SandboxPaymentGateway",
        BOOKING_INVENTORY_PROVIDER="sandbox.inventory.SandboxInventory",
        BOOKING_EMAIL_PROVIDER="sandbox.email.SandboxEmailSender",
        **extra,
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


SEED = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from bookings.models import Resource
Resource.objects.create(code="garden-room", name="Garden room", capacity=500, nightly_price=120)
for name in ("waiting-client", "reading-client"):
    user = get_user_model().objects.create_user(name)
    print("TOKEN", name, Token.objects.create(user=user).key)
"""


def migrate_and_seed(env: dict[str, str]) -> dict[str, str]:
    """Migrate the database, add a resource and two API clients; their tokens by name."""
    manage(env, "migrate", "--noinput", "-v0")
    out = manage(env, "shell", "-c", SEED)
    return dict(line.split()[1:] for line in out.splitlines() if line.startswith("TOKEN "))


def procfile_command(name: str) -> str:
    """The command line of process `name` in the Procfile, as a process manager runs it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        match = re.match(rf"^{name}:\s*(.+)$", line)
        if match:
            return match.group(1)
    raise AssertionError(f"no {name} process in the Procfile")


class Process:
    """A process started in a session of its own (its children with it), output to a file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


class Web(Process):
    """The Procfile's `web` process (gunicorn) on a free port of 127.0.0.1."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.port = free_port()
        env = {**env, "PORT": str(self.port), "WEB_BIND": "127.0.0.1", "METRICS_ROOT": str(tmp)}
        super().__init__(["sh", "-c", procfile_command("web")], env, tmp / "web.log")
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for(self._serves, 60, f"gunicorn\n{self.output()}")

    def _serves(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{self.output()}")
        try:
            return self.get("/api/v1/resources/", timeout=10).status_code == 401  # anonymous
        except (requests.ConnectionError, requests.Timeout):  # still booting on a busy machine
            return False

    def request(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        # Behind the load balancer: HTTPS as far as Django knows (SECURE_SSL_REDIRECT).
        headers = {"X-Forwarded-Proto": "https", **kwargs.pop("headers", {})}
        if token:
            headers["Authorization"] = f"Token {token}"
        kwargs.setdefault("timeout", 60)
        return requests.request(method, self.base + path, headers=headers, **kwargs)

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, token, **kwargs)


def celery(env: dict[str, str], tmp: Path, *args: str) -> Process:
    name = args[0]
    return Process(
        [sys.executable, "-m", "celery", "-A", "config", *args], env, tmp / f"celery-{name}.log"
    )
