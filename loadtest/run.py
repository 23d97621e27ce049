"""Short load test: gunicorn and two Celery workers (separate queues) with the production
settings on 127.0.0.1, then locust headless against the client API.

    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://... CACHE_URL=redis://... \\
        .venv/bin/python loadtest/run.py --users 10 --duration 60s --p95-ms 500

The database is migrated and given a resource and API clients; use a database of its own.
Exit code: locust's (1 on any request error or a p95 above the bound), or 2 if the stack did
not start.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent

SETUP = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from bookings.models import Resource
import json
Resource.objects.update_or_create(code="load-room", defaults=dict(
    name="Load test room", capacity=1_000_000, nightly_price="100.00", currency="EUR"))
tokens = []
for i in range({clients}):
    user, _ = get_user_model().objects.get_or_create(username=f"load-client-{{i}}")
    tokens.append(Token.objects.get_or_create(user=user)[0].key)
print(json.dumps(tokens))
"""

REPORT = """
from collections import Counter
from bookings.models import Booking
print(dict(Counter(Booking.objects.values_list("state", flat=True))))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310  (http on 127.0.0.1)
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--spawn-rate", type=float, default=5)
    parser.add_argument("--duration", default="60s")
    parser.add_argument("--p95-ms", type=float, default=500)
    parser.add_argument("--web-processes", type=int, default=3)
    parser.add_argument("--logs", default=str(ROOT / "test-artifacts" / "load"))
    args = parser.parse_args()

    for required in ("DATABASE_URL", "CELERY_BROKER_URL"):
        if not os.environ.get(required):
            print(f"{required} is required (PostgreSQL and Redis or RabbitMQ)", file=sys.stderr)
            return 2
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain HTTP on the loopback interface
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        "API_THROTTLE_CLIENT": "1000000/minute",  # measure latency, not the throttle
        "LOG_LEVEL": os.environ.get("LOAD_LOG_LEVEL", "WARNING"),
        "WEB_BIND": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(args.web_processes),
        # Sandbox providers, as on a staging deployment: the load is ours, not a gateway's.
        "BOOKING_ALLOW_SANDBOX": "1",
        "BOOKING_FRAUD_PROVIDER": "sandbox.fraud.SandboxFraudScreening",
        "BOOKING_PAYMENT_PROVIDER": "sandbox.payments.SandboxPaymentGateway",
        "BOOKING_INVENTORY_PROVIDER": "sandbox.inventory.SandboxInventory",
        "BOOKING_EMAIL_PROVIDER": "sandbox.email.SandboxEmailSender",
    }
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    manage = [str(VENV / "python"), "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    setup = SETUP.format(clients=args.users)
    out = subprocess.run(
        [*manage, "shell", "-c", setup], cwd=ROOT, env=env, check=True, capture_output=True
    )
    tokens = out.stdout.decode().strip().splitlines()[-1]

    celery = [str(VENV / "celery"), "-A", "config", "worker", "--concurrency=2", "-O", "fair"]
    commands = {
        "web": [str(VENV / "gunicorn"), "config.wsgi", "-c", "config/gunicorn.py"],
        "worker-front": [*celery, "-Q", "sagas,fraud,inventory,notifications", "-n", "front@%h"],
        "worker-payments": [*celery, "-Q", "payments", "-n", "payments@%h"],
    }
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            log = open(logs / f"{name}.log", "w")  # noqa: SIM115  (closed with the process)
            procs[name] = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_healthy(f"http://127.0.0.1:{port}/health/web/")
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 2
        started = time.monotonic()
        locust = subprocess.run(
            [
                str(VENV / "locust"),
                "-f",
                str(ROOT / "loadtest" / "locustfile.py"),
                "--headless",
                "--only-summary",
                "-u",
                str(args.users),
                "-r",
                str(args.spawn_rate),
                "-t",
                args.duration,
                "--host",
                f"http://127.0.0.1:{port}",
                "--csv",
                str(logs / "locust"),
            ],
            cwd=ROOT,
            env={**env, "LOAD_TOKENS": tokens, "LOAD_P95_MS": str(args.p95_ms)},
        )
        print(f"locust ran {time.monotonic() - started:.0f}s")
        time.sleep(5)  # let the workers catch up before counting
        report = subprocess.run(
            [*manage, "shell", "-c", REPORT], cwd=ROOT, env=env, capture_output=True
        )
        states = report.stdout.decode().strip().splitlines()[-1:]  # after Django's banner
        print("bookings by state after the run:", *states)
        return locust.returncode
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
