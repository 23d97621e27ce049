"""`make chaos`: minutes of mixed booking traffic through the services against real Celery
workers, PostgreSQL and the broker, with random worker kills (SIGKILL) and broker and database
restarts. Prints one table (attempted, completed, cancelled, requires attention, lost,
duplicated, stuck, time to recover) and exits non-zero when any promise is broken.

Every server it restarts is its own (devtools/harness.py): a `redis-server` (the broker and the
caches) and a PostgreSQL cluster made by `initdb`, in temporary directories on free ports of
127.0.0.1, and with --broker rabbitmq a RabbitMQ node of its own; all stopped and removed when
the run ends, however it ends. The machine's own servers are never touched. Bounded: the traffic
stops after --duration seconds and the run gives up waiting --settle seconds after the last
fault.

    .venv/bin/python tools/chaos.py --duration 300 --sagas 2000 --broker redis
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the project's packages next to tools/
    sys.path.insert(0, str(ROOT))

from devtools import harness  # noqa: E402

DB_NAME = "bookingops_chaos"
QUEUE = "chaos"
SETTINGS = "config.settings.test"
LOG = ROOT / "test-artifacts" / "chaos"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=300, help="seconds of traffic")
    p.add_argument("--sagas", type=int, default=2000, help="bookings to create")
    p.add_argument("--broker", choices=["rabbitmq", "redis"], default="redis")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--concurrency", type=int, default=2, help="pool size of each worker")
    p.add_argument("--pool", default="prefork", choices=["prefork", "solo"], help="worker pool")
    p.add_argument("--fault-every", type=float, default=25, help="mean seconds between faults")
    p.add_argument("--settle", type=float, default=240, help="seconds allowed to recover")
    p.add_argument(
        "--faults", default="kill,broker,database", help="kinds of fault to inject, comma-separated"
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args(argv)


class Clock:
    """The run's timeline: each event printed with the seconds since the start, and kept."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[str] = []

    def event(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:7.1f}s {text}"
        self.events.append(line)
        print(line, flush=True)


def seed() -> list[Any]:
    from bookings.models import Resource

    specs = [("hotel", 40, "90.00"), ("villa", 4, "400.00"), ("sold-out", 0, "500.00")]
    return [
        Resource.objects.create(code=c, name=c.title(), capacity=cap, nightly_price=price)
        for c, cap, price in specs
    ]


def one_booking(rng: random.Random) -> Any:
    from bookings.services import booking_create

    roll = rng.random()
    token, email, resource = "tok_visa", f"guest{rng.randrange(10**9)}@example.com", "hotel"
    if roll < 0.10:
        token = "tok_declined"
    elif roll < 0.15:
        token = "tok_flaky"
    elif roll < 0.20:
        email = f"x{rng.randrange(10**9)}@fraud.test"
    elif roll < 0.25:
        resource = "sold-out"
    elif roll < 0.27:
        resource, token = "sold-out", "tok_void_fails"
    elif roll < 0.29:
        email = f"bounce@{rng.randrange(10**9)}.example.com"
    elif roll < 0.40:
        resource = "villa"
    check_in = date.today() + timedelta(days=rng.randrange(1, 60))
    return booking_create(
        resource_code=resource,
        check_in=check_in,
        check_out=check_in + timedelta(days=rng.randrange(1, 5)),
        guest_name="Chaos Monkey",
        guest_email=email,
        payment_token=token,
    )


class Run:
    """The traffic, the sweeper (as Celery beat runs it) and the faults, each in a thread."""

    def __init__(
        self,
        args: argparse.Namespace,
        clock: Clock,
        workers: list[harness.Worker],
        restarts: dict[str, Any],
    ) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.clock = clock
        self.workers = workers
        self.restarts = restarts  # fault kind -> the throwaway server to restart
        self.created: list[str] = []
        self.refused = 0
        self.cancels = 0
        self.stop_traffic = threading.Event()
        self.stop_sweeper = threading.Event()
        self.faults: list[str] = []
        self.last_fault_end = 0.0

    def traffic(self) -> None:
        from django.db import OperationalError, close_old_connections, connection

        from bookings.errors import ApplicationError
        from bookings.services import booking_cancel

        interval = self.args.duration / self.args.sagas
        next_at = time.monotonic()
        while len(self.created) + self.refused < self.args.sagas and not self.stop_traffic.is_set():
            next_at += interval
            try:
                close_old_connections()
                booking = one_booking(self.rng)
                self.created.append(str(booking.pk))
                if self.rng.random() < 0.05:  # a customer who changes their mind
                    booking_cancel(booking=booking, actor="chaos-customer")
                    self.cancels += 1
            except (OperationalError, ApplicationError) as exc:
                # The database is down: the client gets an error, nothing was promised.
                self.refused += 1
                if isinstance(exc, OperationalError):
                    connection.close()
            time.sleep(max(0.0, next_at - time.monotonic()))

    def sweeper(self) -> None:
        from django.db import OperationalError, close_old_connections, connection

        from sagas import recovery

        while not self.stop_sweeper.is_set():
            try:
                close_old_connections()
                recovery.sweep()
            except OperationalError:
                connection.close()
            self.stop_sweeper.wait(2)

    def chaos(self) -> None:
        allowed = set(self.args.faults.split(","))
        kinds = [k for k in ("kill", "kill", "kill", "broker", "database") if k in allowed]
        while kinds and not self.stop_traffic.wait(self.rng.expovariate(1 / self.args.fault_every)):
            kind = self.rng.choice(kinds)
            if kind == "kill":
                victim = self.rng.choice(self.workers)
                self.clock.event(f"fault: SIGKILL worker {victim.name}")
                victim.kill()
                time.sleep(self.rng.uniform(1, 4))
                victim.start(wait=False)
            else:
                server = self.restarts[kind]
                self.clock.event(f"fault: restart {server.kind} (port {server.port})")
                server.restart()
            self.faults.append(kind)
            self.last_fault_end = time.monotonic()
            self.clock.event(f"fault over ({len(self.created)} bookings so far)")


def settled() -> bool:
    from django.db import OperationalError, close_old_connections, connection

    from bookings.models import Booking

    try:
        close_old_connections()
        return not Booking.objects.exclude(state__in=Booking.TERMINAL).exists()
    except OperationalError:
        connection.close()
        return False


def wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def chaos(args: argparse.Namespace, clock: Clock, servers: contextlib.ExitStack) -> int:
    """Start the throwaway servers (on `servers`, which stops them), the database and the
    workers, run the traffic and the faults, and report."""
    redis = servers.enter_context(harness.RedisServer())
    postgres = servers.enter_context(harness.PostgresCluster())
    rabbitmq = servers.enter_context(harness.RabbitMQNode()) if args.broker == "rabbitmq" else None
    database = harness.create_database(postgres.url(), DB_NAME)
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DATABASE_URL": database,
        "CELERY_BROKER_URL": rabbitmq.url() if rabbitmq else redis.url(0),
        "CACHE_URL": redis.url(1),
        "COORDINATION_CACHE_URL": redis.url(2),
        "CELERY_QUEUE": QUEUE,
        "DATA_DIR": str(ROOT / "var" / "chaos"),
        "SAGA_SWEEP_INTERVAL": "2",
    }
    clock.event(
        f"servers: redis {redis.port}, postgres {postgres.port}"
        + (f", rabbitmq {rabbitmq.port}" if rabbitmq else "")
    )
    os.environ.update(env)  # this process's Django and Celery, and the workers, use them
    harness.migrate(database, settings=SETTINGS)

    import django

    django.setup()

    from django.db import close_old_connections

    from bookings.consistency import consistency_report
    from bookings.models import Booking

    seed()
    LOG.mkdir(parents=True, exist_ok=True)
    workers = [
        harness.Worker(
            f"chaos{n}",
            settings=SETTINGS,
            queues=QUEUE,
            env=env,
            log_path=LOG / f"worker-{n}.log",
            concurrency=args.concurrency,
            pool=args.pool,
        )
        for n in range(args.workers)
    ]
    for w in workers:
        servers.enter_context(w)  # stopped before the servers, whatever happens
    restarts = {"broker": rabbitmq or redis, "database": postgres}
    run = Run(args, clock, workers, restarts)
    threads = [
        threading.Thread(target=run.traffic, daemon=True),
        threading.Thread(target=run.sweeper, daemon=True),
        threading.Thread(target=run.chaos, daemon=True),
    ]
    clock.event(f"traffic: {args.sagas} bookings over {args.duration:.0f}s, broker {args.broker}")
    for t in threads:
        t.start()
    threads[0].join(args.duration * 2)
    run.stop_traffic.set()
    threads[2].join(120)
    traffic_end = time.monotonic()
    clock.event(f"traffic over: {len(run.created)} created, {run.refused} refused")
    wait(settled, args.settle)
    recovered_at = time.monotonic()
    run.stop_sweeper.set()
    threads[1].join(30)
    for w in workers:
        w.stop()
    close_old_connections()
    report = consistency_report()
    missing = len(
        set(run.created) - {str(pk) for pk in Booking.objects.values_list("pk", flat=True)}
    )
    since = max(traffic_end, run.last_fault_end)
    figures = {
        "attempted": len(run.created) + run.refused,
        "accepted": len(run.created),
        "refused during outages": run.refused,
        "customer cancels": run.cancels,
        "completed": report.states.get("completed", 0),
        "cancelled": report.states.get("cancelled", 0),
        "requires attention": report.states.get("requires_attention", 0),
        "lost": missing,
        "lost records": len(report.lost_records),
        "duplicated effects": len(report.duplicated_effects),
        "orphan authorizations": len(report.orphan_authorizations),
        "orphan reservations": len(report.orphan_reservations),
        "overbooked nights": len(report.overbooked_nights),
        "disagreements": len(report.disagreements),
        "stuck": len(report.stuck),
        "faults": dict(sorted({k: run.faults.count(k) for k in set(run.faults)}.items())),
        "time to recover (s)": round(recovered_at - since, 1),
        "duration (s)": round(time.monotonic() - clock.t0, 1),
    }
    print("\n| figure | value |\n|---|---|")
    for name, value in figures.items():
        print(f"| {name} | {value} |")
    problems = {k: getattr(report, k)[:5] for k in report.PROBLEMS if getattr(report, k)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({**figures, "problems": problems, "events": clock.events}, indent=2)
        )
    ok = report.ok and missing == 0
    print("\nchaos: " + ("all invariants hold" if ok else f"BROKEN: {problems}"))
    from django.db import connections

    connections.close_all()  # before the cluster stops
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds the ExitStack: workers and servers stopped

    signal.signal(signal.SIGTERM, terminated)
    clock = Clock()
    with contextlib.ExitStack() as servers:
        return chaos(args, clock, servers)


if __name__ == "__main__":
    sys.exit(main())
