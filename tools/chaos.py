"""`make chaos`: minutes of mixed booking traffic through the services against real Celery
workers, PostgreSQL and the broker, with random worker kills (SIGKILL) and broker and database
restarts. Prints one table (attempted, completed, cancelled, requires attention, lost,
duplicated, stuck, time to recover) and exits non-zero when any promise is broken.

Everything runs on 127.0.0.1: a database of its own (bookingops_chaos, recreated), a queue of
its own, the machine's Redis or RabbitMQ. Bounded: the traffic stops after --duration seconds
and the run gives up waiting --settle seconds after the last fault.

    .venv/bin/python tools/chaos.py --duration 300 --sagas 2000 --broker redis
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BROKERS = {
    "redis": "redis://127.0.0.1:6379/9",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}
DB_NAME = "bookingops_chaos"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=300, help="seconds of traffic")
    p.add_argument("--sagas", type=int, default=2000, help="bookings to create")
    p.add_argument("--broker", choices=sorted(BROKERS), default="redis")
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
    return p.parse_args()


ARGS = parse()
RNG = random.Random(ARGS.seed)
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "CELERY_BROKER_URL": BROKERS[ARGS.broker],
        "CELERY_QUEUE": "chaos",
        "DATA_DIR": str(ROOT / "var" / "chaos"),
        "SAGA_SWEEP_INTERVAL": "2",
    }
)
sys.path.insert(0, str(ROOT))


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=check)


def answers(*cmd: str) -> bool:
    return sh(*cmd, check=False).returncode == 0


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def recreate_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB_NAME}")
    sh(sys.executable, "manage.py", "migrate", "--noinput", "-v0")


os.chdir(ROOT)
recreate_database()

import django  # noqa: E402

django.setup()

from celery import current_app  # noqa: E402
from django.db import OperationalError, close_old_connections, connection  # noqa: E402

from bookings.consistency import consistency_report  # noqa: E402
from bookings.errors import ApplicationError  # noqa: E402
from bookings.models import Booking, Resource  # noqa: E402
from bookings.services import booking_cancel, booking_create  # noqa: E402
from sagas import recovery  # noqa: E402

LOG = ROOT / "test-artifacts" / "chaos"
LOG.mkdir(parents=True, exist_ok=True)
EVENTS: list[str] = []
T0 = time.monotonic()


def event(text: str) -> None:
    line = f"{time.monotonic() - T0:7.1f}s {text}"
    EVENTS.append(line)
    print(line, flush=True)


class Worker:
    def __init__(self, n: int) -> None:
        self.n = n
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(LOG / f"worker-{self.n}.log", "a")  # noqa: SIM115  (owned by the process)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=WARNING",
             f"--pool={ARGS.pool}", f"--concurrency={ARGS.concurrency}", "--queues=chaos",
             f"--hostname=chaos{self.n}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def restart_redis() -> None:
    sh("redis-cli", "-h", "127.0.0.1", "shutdown", "nosave", check=False)
    sh("redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
       "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
       "--logfile", "/var/log/redis/ci.log")  # fmt: skip
    wait(lambda: answers("redis-cli", "-h", "127.0.0.1", "ping"), 30)


def restart_rabbitmq() -> None:
    sh("rabbitmqctl", "stop_app", check=False)
    sh("rabbitmqctl", "start_app", check=False)
    wait(lambda: answers("rabbitmq-diagnostics", "-q", "ping"), 60)


def restart_postgresql() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    sh("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast")
    wait(lambda: answers("pg_isready", "-h", "127.0.0.1", "-q"), 60)


def seed() -> list[Resource]:
    specs = [("hotel", 40, "90.00"), ("villa", 4, "400.00"), ("sold-out", 0, "500.00")]
    return [
        Resource.objects.create(code=c, name=c.title(), capacity=cap, nightly_price=price)
        for c, cap, price in specs
    ]


def one_booking(resources: dict[str, Resource]) -> Booking:
    roll = RNG.random()
    token, email, resource = "tok_visa", f"guest{RNG.randrange(10**9)}@example.com", "hotel"
    if roll < 0.10:
        token = "tok_declined"
    elif roll < 0.15:
        token = "tok_flaky"
    elif roll < 0.20:
        email = f"x{RNG.randrange(10**9)}@fraud.test"
    elif roll < 0.25:
        resource = "sold-out"
    elif roll < 0.27:
        resource, token = "sold-out", "tok_void_fails"
    elif roll < 0.29:
        email = f"bounce@{RNG.randrange(10**9)}.example.com"
    elif roll < 0.40:
        resource = "villa"
    check_in = date.today() + timedelta(days=RNG.randrange(1, 60))
    return booking_create(
        resource_code=resource,
        check_in=check_in,
        check_out=check_in + timedelta(days=RNG.randrange(1, 5)),
        guest_name="Chaos Monkey",
        guest_email=email,
        payment_token=token,
    )


class Run:
    def __init__(self) -> None:
        self.created: list[str] = []
        self.refused = 0
        self.cancels = 0
        self.stop_traffic = threading.Event()
        self.stop_sweeper = threading.Event()
        self.faults: list[str] = []
        self.last_fault_end = 0.0

    def traffic(self, resources: dict[str, Resource]) -> None:
        interval = ARGS.duration / ARGS.sagas
        next_at = time.monotonic()
        while len(self.created) + self.refused < ARGS.sagas and not self.stop_traffic.is_set():
            next_at += interval
            try:
                close_old_connections()
                booking = one_booking(resources)
                self.created.append(str(booking.pk))
                if RNG.random() < 0.05:  # a customer who changes their mind
                    booking_cancel(booking=booking, actor="chaos-customer")
                    self.cancels += 1
            except (OperationalError, ApplicationError) as exc:
                # The database is down: the client gets an error, nothing was promised.
                self.refused += 1
                if isinstance(exc, OperationalError):
                    connection.close()
            time.sleep(max(0.0, next_at - time.monotonic()))

    def sweeper(self) -> None:
        while not self.stop_sweeper.is_set():
            try:
                close_old_connections()
                recovery.sweep()
            except OperationalError:
                connection.close()
            self.stop_sweeper.wait(2)

    def chaos(self, workers: list[Worker]) -> None:
        allowed = set(ARGS.faults.split(","))
        kinds = [k for k in ("kill", "kill", "kill", "broker", "database") if k in allowed]
        while kinds and not self.stop_traffic.wait(RNG.expovariate(1 / ARGS.fault_every)):
            kind = RNG.choice(kinds)
            if kind == "kill":
                victim = RNG.choice(workers)
                event(f"fault: SIGKILL worker {victim.n}")
                victim.kill()
                time.sleep(RNG.uniform(1, 4))
                victim.start()
            elif kind == "broker":
                event(f"fault: restart {ARGS.broker}")
                (restart_redis if ARGS.broker == "redis" else restart_rabbitmq)()
            else:
                event("fault: restart PostgreSQL")
                restart_postgresql()
            self.faults.append(kind)
            self.last_fault_end = time.monotonic()
            event(f"fault over ({len(self.created)} bookings so far)")


def main() -> int:
    resources = {r.code: r for r in seed()}
    try:  # messages a previous run left behind
        with current_app.connection_for_write() as conn:
            conn.default_channel.queue_purge("chaos")
    except Exception as exc:  # the queue does not exist yet
        event(f"no queue to purge ({type(exc).__name__})")
    workers = [Worker(n) for n in range(ARGS.workers)]
    for w in workers:
        w.start()
    run = Run()
    threads = [
        threading.Thread(target=run.traffic, args=(resources,), daemon=True),
        threading.Thread(target=run.sweeper, daemon=True),
        threading.Thread(target=run.chaos, args=(workers,), daemon=True),
    ]
    event(f"traffic: {ARGS.sagas} bookings over {ARGS.duration:.0f}s, broker {ARGS.broker}")
    for t in threads:
        t.start()
    threads[0].join(ARGS.duration * 2)
    run.stop_traffic.set()
    threads[2].join(120)
    traffic_end = time.monotonic()
    event(f"traffic over: {len(run.created)} created, {run.refused} refused")

    def settled() -> bool:
        try:
            close_old_connections()
            return not Booking.objects.exclude(state__in=Booking.TERMINAL).exists()
        except OperationalError:
            connection.close()
            return False

    wait(settled, ARGS.settle)
    recovered_at = time.monotonic()
    run.stop_sweeper.set()
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
        "duration (s)": round(time.monotonic() - T0, 1),
    }
    print("\n| figure | value |\n|---|---|")
    for name, value in figures.items():
        print(f"| {name} | {value} |")
    problems = {k: getattr(report, k)[:5] for k in report.PROBLEMS if getattr(report, k)}
    if ARGS.json:
        ARGS.json.write_text(
            json.dumps({**figures, "problems": problems, "events": EVENTS}, indent=2)
        )
    ok = report.ok and missing == 0
    print("\nchaos: " + ("all invariants hold" if ok else f"BROKEN: {problems}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
