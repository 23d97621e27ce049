"""`make bench`: bookings driven through their saga with full durability, on this machine, next to
the peers (../shared/peers) measured in the same sitting. Prints one table, writes
bench/results/<date>.json and bench/results/<date>.png.

Everything runs on 127.0.0.1 against the machine's PostgreSQL and Redis, in a database of its
own (bookingops_bench, recreated) and a Redis database of its own; it starts and stops its own
Celery workers (and gunicorn for the API figures) and stops by itself.

    .venv/bin/python bench/run.py                 # everything (about 15 minutes)
    .venv/bin/python bench/run.py --only saga     # a subset: saga, mix, rate, growth, workers,
                                                  # sweep, admin, api, peers
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = "bookingops_bench"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DSN = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/11"
QUEUE = "bench"
ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "bench-" + "x7Kq2mP9vL4nR8sT1wY6zB3cF5hJ0dG" * 2,
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_SECURE_SSL_REDIRECT": "0",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    "CELERY_BROKER_URL": REDIS_URL,
    "CACHE_URL": "redis://127.0.0.1:6379/12",
    "CELERY_QUEUE": QUEUE,
    "BOOKING_QUEUE_FRAUD": QUEUE,
    "BOOKING_QUEUE_PAYMENTS": QUEUE,
    "BOOKING_QUEUE_INVENTORY": QUEUE,
    "BOOKING_QUEUE_EMAIL": QUEUE,
    "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    "LOG_LEVEL": "WARNING",
    "DATA_DIR": str(ROOT / "var" / "bench"),
}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sagas", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2, help="worker processes (2 pool each)")
    p.add_argument("--only", default="", help="comma-separated subset of scenarios")
    p.add_argument("--skip", default="", help="comma-separated scenarios to skip")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return p.parse_args()


ARGS = parse()
os.environ.update(ENV)
os.chdir(ROOT)


def sh(*cmd: str, env: dict | None = None, timeout: float = 1800) -> str:
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB_NAME}")
    sh(sys.executable, "manage.py", "migrate", "--noinput", "-v0")


recreate_database()

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.meters import CpuMeter, PgCounters, pct, redis_publishes  # noqa: E402
from bookings.models import Booking, Resource  # noqa: E402
from bookings.services import booking_create  # noqa: E402

LOGS = ROOT / "var" / "bench" / "logs"
LOGS.mkdir(parents=True, exist_ok=True)
RESULTS: dict = {"machine": {}, "scenarios": {}}


class Workers:
    """N `celery worker` processes (prefork, 2 each) on the bench queue."""

    def __init__(self, n: int, concurrency: int = 2) -> None:
        self.procs = []
        for i in range(n):
            log = open(LOGS / f"worker-{i}.log", "a")  # noqa: SIM115  (owned by the process)
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "config", "worker",
                     "--loglevel=WARNING", f"--concurrency={concurrency}", f"--queues={QUEUE}",
                     f"--hostname=bench{i}@%h", "--without-gossip", "--without-mingle",
                     "--without-heartbeat"],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            )
        time.sleep(4)  # let the pools fork and connect

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def reset_bookings() -> None:
    with connection.cursor() as c:
        c.execute(
            "TRUNCATE bookings_booking, sagas_saga, sagas_sagastep, sagas_sagaevent, "
            "providers_paymentauthorization, providers_inventoryreservation, "
            "providers_emailrecord, providers_fraudscreeningrecord, bookings_idempotencykey "
            "CASCADE"
        )
    redis.Redis.from_url(REDIS_URL).flushdb()


def resources() -> dict[str, Resource]:
    out = {}
    for code, capacity in (("bench-hotel", 100000), ("bench-sold-out", 0)):
        out[code], _ = Resource.objects.get_or_create(
            code=code, defaults={"name": code, "capacity": capacity, "nightly_price": 100}
        )
    return out


MIX = {
    "happy": [("bench-hotel", "tok_visa", 1.0)],
    "mix": [
        ("bench-hotel", "tok_visa", 0.80),
        ("bench-hotel", "tok_declined", 0.10),
        ("bench-sold-out", "tok_visa", 0.05),
        ("bench-hotel", "tok_flaky", 0.05),
    ],
}


def plan(kind: str, n: int) -> list[tuple[str, str]]:
    """A deterministic sequence of (resource, token) with the mix's proportions."""
    out = []
    for resource, token, share in MIX[kind]:
        out += [(resource, token)] * round(n * share)
    # interleave evenly so every part of the run sees the same mix
    return [out[(i * 7919) % len(out)] for i in range(len(out))] if kind != "happy" else out


def create(resource: str, token: str, i: int) -> Booking:
    check_in = date.today() + timedelta(days=1 + i % 360)
    return booking_create(
        resource_code=resource,
        check_in=check_in,
        check_out=check_in + timedelta(days=1 + i % 3),
        guest_name="Bench Guest",
        guest_email=f"guest{i}@example.com",
        payment_token=token,
    )


def wait_all_ended(n: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = Booking.objects.exclude(state__in=Booking.TERMINAL).count()
        if pending == 0:
            return
        time.sleep(0.25)
    raise RuntimeError(f"{pending} of {n} bookings did not end in {timeout}s")


def run_sagas(label: str, kind: str, n: int, *, rate: float | None = None,
              workers: int | None = None, fresh: bool = True) -> dict:  # fmt: skip
    """Create n bookings through the service layer (as fast as possible, or at `rate` per
    second) with real workers running, wait until every saga ended, and measure."""
    if fresh:
        reset_bookings()
    resources()
    w = Workers(workers or ARGS.workers)
    sequence = plan(kind, n)
    pg0, pub0, cpu = PgCounters.read(PG_DSN), redis_publishes(REDIS_URL), CpuMeter().start()
    started = time.monotonic()
    created_since = timezone.now()
    for i, (resource, token) in enumerate(sequence):
        if rate:
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
        create(resource, token, i)
    submitted = time.monotonic() - started
    wait_all_ended(n)
    wall = time.monotonic() - started
    cpu_split = cpu.stop()
    time.sleep(1.2)  # the statistics collector flushes about once a second
    pg = pg0.delta(PgCounters.read(PG_DSN))
    published = redis_publishes(REDIS_URL) - pub0 - 1
    w.stop()
    rows = list(
        Booking.objects.filter(created_at__gte=created_since)
        .select_related("saga")
        .values_list("created_at", "saga__finished_at", "state")
    )
    latencies = [(f - c).total_seconds() * 1000 for c, f, _ in rows if f]
    first, last = min(c for c, _, _ in rows), max(f for _, f, _ in rows if f)
    states: dict[str, int] = {}
    for *_, s in rows:
        states[s] = states.get(s, 0) + 1
    result = {
        "sagas": n,
        "states": states,
        "sagas_per_s": round(n / (last - first).total_seconds(), 1),
        "submit_s": round(submitted, 2),
        "p50_ms": round(pct(latencies, 0.5), 1),
        "p95_ms": round(pct(latencies, 0.95), 1),
        "write_xacts_per_saga": round(pg["write_xacts"] / n, 2),
        "xacts_per_saga": round(pg["xact_commit"] / n, 2),
        "wal_syncs_per_saga": round(pg["wal_sync"] / n, 2),
        "messages_per_saga": round(published / n, 2),
        "cpu_ms_per_saga": {
            k.removesuffix("_cpu_s"): round(v * 1000 / n, 2)
            for k, v in cpu_split.items()
            if k.endswith("_cpu_s")
        },
        "wall_s": round(wall, 1),
        "offered_rate": rate,
        "workers": workers or ARGS.workers,
    }
    RESULTS["scenarios"][label] = result
    print(f"{label}: {json.dumps(result)}", flush=True)
    return result


SCENARIOS = {}


def scenario(name):
    def register(fn):
        SCENARIOS[name] = fn
        return fn

    return register


@scenario("saga")
def saga_saturation() -> None:
    run_sagas("happy path, saturation", "happy", ARGS.sagas)


@scenario("rate")
def saga_fixed_rate() -> None:
    run_sagas("happy path, 50/s offered", "happy", min(ARGS.sagas, 1500), rate=50)


@scenario("mix")
def saga_mix() -> None:
    run_sagas("mix 80/10/5/5, saturation", "mix", ARGS.sagas)


def main() -> int:
    only = [s for s in ARGS.only.split(",") if s] or list(SCENARIOS)
    skip = set(ARGS.skip.split(","))
    for name in only:
        if name not in skip:
            SCENARIOS[name]()
    ARGS.out.mkdir(parents=True, exist_ok=True)
    out = ARGS.out / f"{date.today().isoformat()}.json"
    out.write_text(json.dumps(RESULTS, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
