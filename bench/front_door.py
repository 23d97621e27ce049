"""The front door (`make bench BENCH_ONLY=front_door`): bookings created through
`POST /api/v1/bookings/` by concurrent keep-alive HTTP clients, against the production processes
(the Procfile's `web` and `worker` commands, production settings) on PostgreSQL + Redis, in
rounds interleaved with the peers of ../shared/peers: the DBOS workflow peer (end to end) and the
drf_min API peer (the create endpoint alone).

Each round:

1. end to end: the Procfile's web and worker started, N clients (16, then 50) create
   --front-bookings bookings each run; bookings/s from the first request to the last booking's
   terminal state, the create's p50/p95 seen by the clients during the run, CPU per booking by
   process kind (web: the gunicorn tree; worker: the Celery tree; postgres: the backends of the
   bench's database; client: this process), read from /proc;
   then the same with the providers' work on another machine (bench/remote.py, the peers'
   workload: DBOS's steps do nothing either), 16 clients;
2. the DBOS peer (its best settings, 2,000 sagas);
3. the API alone, no worker running: 16 clients for a few seconds, without and with an
   Idempotency-Key, then drf_min (gunicorn, 5 sync workers, as its README serves it) the same way.

The layout is the Procfile's defaults unless the environment says otherwise (WEB_CONCURRENCY,
WEB_THREADS, WORKER_POOL, WORKER_CONCURRENCY; FRONT_WORKER_INSTANCES runs the worker line that many
times, for one solo worker per core). Ratios are taken within each round (this machine's speed
drifts from minute to minute) and the median of the rounds is printed.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from django.utils import timezone

from bench.meters import pct
from devtools import harness

ROOT = Path(__file__).resolve().parent.parent
# The variables that route every step to the bench's one queue: the front door runs the
# production routing instead (the Procfile's `worker` consumes every queue).
BENCH_ROUTING = (
    "CELERY_QUEUE",
    "BOOKING_QUEUE_FRAUD",
    "BOOKING_QUEUE_PAYMENTS",
    "BOOKING_QUEUE_INVENTORY",
    "BOOKING_QUEUE_EMAIL",
)
UNLIMITED = "1000000000/minute"
BODY_CHECK_IN = date.today() + timedelta(days=1)


def procfile_command(name: str, procfile: Path = ROOT / "Procfile") -> str:
    """The command of one Procfile line, as a process manager runs it (through the shell)."""
    for line in procfile.read_text().splitlines():
        match = re.match(rf"^{re.escape(name)}:\s*(.+)$", line)
        if match:
            return match.group(1)
    raise LookupError(f"no {name}: line in {procfile}")


def production_env(**extra: str) -> dict[str, str]:
    """This process's environment (bench/run.py's production settings on the bench's database
    and Redis), with the production queue routing and no API throttling (the load is ours)."""
    env = {k: v for k, v in os.environ.items() if k not in BENCH_ROUTING}
    env.update(
        {
            "API_THROTTLE_CLIENT": UNLIMITED,
            "API_THROTTLE_ANON": UNLIMITED,
            "WEB_BIND": "127.0.0.1",
            "LOG_LEVEL": os.environ.get("FRONT_LOG_LEVEL", "INFO"),  # as deployed
            **extra,
        }
    )
    return env


class Process:
    """One Procfile line running in a session of its own (stopped with its whole tree)."""

    def __init__(
        self, name: str, env: dict[str, str], log: Path, procfile: Path = ROOT / "Procfile"
    ) -> None:
        self.name = name
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", procfile_command(name, procfile)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu(self) -> float:
        """CPU seconds of the tree: each live process's own and its reaped children's."""
        total = 0.0
        for p in self.tree():
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def stop(self) -> None:
        """SIGTERM to the process group, then to whatever of the tree is left in a session of
        its own (a Celery worker under bin/own-session); SIGKILL after a grace period."""
        everyone = self.tree()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        for p in everyone[1:]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        _, alive = psutil.wait_procs(everyone, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class PgBackendCpu:
    """CPU seconds of the PostgreSQL backends serving one database (not the whole server, which
    this machine shares), sampled every half second so that a backend that exits is counted up
    to its last sample."""

    def __init__(self, dsn: str, database: str) -> None:
        self.dsn, self.database = dsn, database
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self, conn: psycopg.Connection, initial: bool) -> None:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [self.database],
        ).fetchall()
        for (pid,) in rows:
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds = t.user + t.system
            if pid not in self.first:
                self.first[pid] = seconds if initial else 0.0
            self.last[pid] = seconds

    def _poll(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            self._sample(conn, initial=True)
            self._started.set()
            while not self._stop.wait(0.5):
                self._sample(conn, initial=False)
            self._sample(conn, initial=False)

    def start(self) -> PgBackendCpu:
        self._started = threading.Event()
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(10)
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def _own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def body_for(i: int, resource: str) -> bytes:
    check_in = BODY_CHECK_IN + timedelta(days=i % 300)
    return json.dumps(
        {
            "resource": resource,
            "check_in": check_in.isoformat(),
            "check_out": (check_in + timedelta(days=1 + i % 3)).isoformat(),
            "guest_name": "Front Door",
            "guest_email": f"guest{i}@example.com",
            "payment_token": "tok_visa",
        }
    ).encode()


def load(
    port: int,
    token: str,
    clients: int,
    *,
    resource: str,
    total: int | None = None,
    seconds: float | None = None,
    idempotency_key: bool = False,
    rate: float | None = None,
) -> dict[str, Any]:
    """`clients` threads, each with its own keep-alive connection (http.client reconnects by
    itself when the server closes it), creating bookings until `total` were sent or `seconds`
    passed: each as soon as the one before was answered, or, with `rate`, at that many requests
    per second from all clients together (each client on its own schedule, starting staggered;
    a late answer is not made up for by a burst). Every answer must be a 201."""
    numbers = itertools.count()
    every = clients / rate if rate else 0.0
    times: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + seconds if seconds else None
    headers = {
        "Authorization": f"Token {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-Forwarded-Proto": "https",
    }

    def client(number: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        due = time.monotonic() + every * number / clients
        try:
            while True:
                if every:
                    time.sleep(max(0.0, due - time.monotonic()))
                    due = max(due + every, time.monotonic())
                i = next(numbers)
                if (total is not None and i >= total) or (
                    deadline is not None and time.monotonic() >= deadline
                ):
                    return
                extra = {"Idempotency-Key": str(uuid.uuid4())} if idempotency_key else {}
                started = time.perf_counter()
                try:
                    conn.request(
                        "POST", "/api/v1/bookings/", body_for(i, resource), {**headers, **extra}
                    )
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    failures.append(repr(exc))
                    continue
                mine.append((time.perf_counter() - started) * 1000)
                if response.status != 201:
                    failures.append(f"{response.status} {data[:200]!r}")
        finally:
            conn.close()
            times.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    return {
        "requests": len(times),
        "failures": len(failures),
        "first_failures": failures[:3],
        "wall_s": round(wall, 2),
        "req_per_s": round(len(times) / wall, 1) if wall else 0.0,
        "p50_ms": round(pct(times, 0.5), 1),
        "p95_ms": round(pct(times, 0.95), 1),
    }


def wait_http(port: int, path: str, timeout: float = 60) -> None:
    def answers() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path, headers={"X-Forwarded-Proto": "https"})
            return conn.getresponse().status < 500
        except OSError:
            return False
        finally:
            conn.close()

    harness.wait_until(answers, timeout=timeout, what=f"web on port {port}")


def wait_workers(expected: int, timeout: float = 60) -> None:
    from celery import current_app

    def answering() -> bool:
        try:
            return len(current_app.control.ping(timeout=0.5)) >= expected
        except Exception:  # the broker is there (checked at start); a worker is not yet
            return False

    harness.wait_until(answering, timeout=timeout, what=f"{expected} worker(s)")


class Layout:
    """The production processes on this machine: the Procfile's web and worker lines, with the
    environment's layout variables (the Procfile's defaults when unset)."""

    KEYS = ("WEB_CONCURRENCY", "WEB_THREADS", "WORKER_POOL", "WORKER_CONCURRENCY")

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.instances = int(os.environ.get("FRONT_WORKER_INSTANCES", "1"))
        self.port = harness.free_port()
        self.web: Process | None = None
        self.workers: list[Process] = []

    def describe(self) -> dict[str, Any]:
        return {
            "web_processes": int(
                os.environ.get("WEB_CONCURRENCY", _gunicorn_default("WEB_CONCURRENCY"))
            ),
            "web_threads": int(os.environ.get("WEB_THREADS", _gunicorn_default("WEB_THREADS"))),
            "worker_pool": os.environ.get("WORKER_POOL", _procfile_default("WORKER_POOL")),
            "worker_concurrency": int(
                os.environ.get("WORKER_CONCURRENCY", _procfile_default("WORKER_CONCURRENCY"))
            ),
            "worker_instances": self.instances,
        }

    def start_web(self) -> None:
        env = production_env(PORT=str(self.port), METRICS_ROOT=str(self.logs / "metrics"))
        self.web = Process("web", env, self.logs / "front-web.log")
        wait_http(self.port, "/health/web/")

    def start_workers(self) -> None:
        for i in range(self.instances):
            env = production_env(METRICS_ROOT=str(self.logs / "metrics" / f"w{i}"))
            self.workers.append(Process("worker", env, self.logs / f"front-worker-{i}.log"))
        wait_workers(self.instances)

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers = []

    def stop(self) -> None:
        self.stop_workers()
        if self.web is not None:
            self.web.stop()
            self.web = None


def _gunicorn_default(name: str) -> str:
    """config/gunicorn.py's default for one of its variables (read, not imported: importing it
    sets variables in this process's environment)."""
    text = (ROOT / "config" / "gunicorn.py").read_text()
    match = re.search(
        rf'os\.environ\.get\("{name}", (multiprocessing\.cpu_count\(\)|"[^"]*")\)', text
    )
    assert match, name
    value = match.group(1).strip().strip('"')
    return str(os.cpu_count() or 1) if "cpu_count" in value else value


def _procfile_default(name: str) -> str:
    """The default the Procfile's worker line gives a variable (`$(nproc)`: this machine's
    number of cores)."""
    match = re.search(rf"\$\{{{name}:-([^}}]+)\}}", procfile_command("worker"))
    assert match, name
    value = match.group(1)
    return str(os.cpu_count() or 1) if value == "$(nproc)" else value


def end_to_end(
    layout: Layout,
    token: str,
    clients: int,
    n: int,
    *,
    dsn: str,
    database: str,
    resource: str,
    reset: Callable[[], None],
    rate: float | None = None,
) -> dict[str, Any]:
    """n bookings through the API from `clients` clients (as fast as they are answered, or at
    `rate` per second in all), with the layout's web and workers running: bookings/s from the
    first request to the last terminal state."""
    from bookings.models import Booking

    reset()
    # Unrecorded warm-up: each web process and thread, each worker process, connects and
    # imports on its first requests.
    load(layout.port, token, clients, resource=resource, total=clients * 3)
    _wait_ended(timezone.now() - timedelta(minutes=5), 120)
    assert layout.web is not None
    pg = PgBackendCpu(dsn, database).start()
    cpu0 = {
        "web": layout.web.cpu(),
        "worker": sum(w.cpu() for w in layout.workers),
        "client": _own_cpu(),
    }
    since = timezone.now()
    first_request = time.time()
    api = load(layout.port, token, clients, resource=resource, total=n, rate=rate)
    _wait_ended(since, 300)
    cpu = {
        "web": layout.web.cpu() - cpu0["web"],
        "worker": sum(w.cpu() for w in layout.workers) - cpu0["worker"],
        "client": _own_cpu() - cpu0["client"],
    }
    cpu["postgres"] = pg.stop()
    rows = list(
        Booking.objects.filter(created_at__gte=since).values_list("state", "saga__finished_at")
    )
    last = max(f for _, f in rows if f).timestamp()
    states: dict[str, int] = {}
    for s, _ in rows:
        states[s] = states.get(s, 0) + 1
    wall = last - first_request
    return {
        "clients": clients,
        "offered_per_s": rate,
        "bookings": len(rows),
        "states": states,
        "bookings_per_s": round(len(rows) / wall, 1),
        "wall_s": round(wall, 1),
        "create_req_per_s": api["req_per_s"],
        "create_p50_ms": api["p50_ms"],
        "create_p95_ms": api["p95_ms"],
        "failures": api["failures"],
        "first_failures": api["first_failures"],
        "cpu_ms_per_booking": {k: round(v * 1000 / len(rows), 2) for k, v in cpu.items()},
        "machine_busy": round(sum(cpu.values()) / (wall * (os.cpu_count() or 1)), 2),
    }


def _wait_ended(since: Any, timeout: float) -> None:
    from bookings.models import Booking

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = (
            Booking.objects.filter(created_at__gte=since)
            .exclude(state__in=Booking.TERMINAL)
            .count()
        )
        if not pending:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{pending} bookings not ended after {timeout}s")


def api_alone(layout: Layout, token: str, seconds: float, resource: str, **kw: Any) -> dict:
    """The create endpoint alone (no worker running): requests/s and web CPU per request."""
    assert layout.web is not None
    load(layout.port, token, 16, resource=resource, seconds=1.5, **kw)  # warm-up
    web0 = layout.web.cpu()
    out = load(layout.port, token, 16, resource=resource, seconds=seconds, **kw)
    out["web_cpu_ms_per_request"] = round(
        (layout.web.cpu() - web0) * 1000 / max(1, out["requests"]), 2
    )
    return out


class DrfMin:
    """The drf_min peer (../shared/peers/drf_min): served as its README does (gunicorn, 5 sync
    workers), with this project's virtualenv (the same Django, DRF, psycopg, Celery, gunicorn
    and redis versions), on a database of its own."""

    def __init__(self, source: Path, admin_dsn: str, redis_url: str, logs: Path) -> None:
        self.dir = source
        self.port = harness.free_port()
        url = harness.create_database(admin_dsn, "bench_drf_min")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
            "DJANGO_SETTINGS_MODULE": "peer.settings",
            "DATABASE_URL": url.replace("postgresql://", "postgres://", 1),
            "CELERY_BROKER_URL": redis_url,
            "CACHE_URL": redis_url,
            "THROTTLE_USER": UNLIMITED,
        }
        manage = [sys.executable, "manage.py"]
        self._run([*manage, "migrate", "-v0"])
        self.token = self._run([*manage, "shell", "-v0", "-c", (
            "from django.contrib.auth.models import User; "
            "from rest_framework.authtoken.models import Token; "
            "from booking.models import Resource; "
            "Resource.objects.create(code='room', capacity=10, nightly_price=100); "
            "print(Token.objects.create(user=User.objects.create(username='c')).key)")]
        ).strip().splitlines()[-1]  # fmt: skip
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / "drf_min.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "peer.wsgi", "-w", "5",
                 "-b", f"127.0.0.1:{self.port}", "--no-control-socket"],
                cwd=self.dir, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            wait_http(self.port, "/api/v1/bookings/")
        except BaseException:
            self.stop()
            raise

    def _run(self, cmd: list[str]) -> str:
        done = subprocess.run(
            cmd, cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=300
        )
        if done.returncode:
            raise RuntimeError(f"drf_min: {' '.join(cmd[:3])} failed: {done.stderr[-2000:]}")
        return done.stdout

    def cpu(self) -> float:
        total = 0.0
        try:
            root = psutil.Process(self.proc.pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
        return total

    def measure(self, seconds: float) -> dict:
        load(self.port, self.token, 16, resource="room", seconds=1.5)  # warm-up
        cpu0 = self.cpu()
        out = load(self.port, self.token, 16, resource="room", seconds=seconds)
        out["web_cpu_ms_per_request"] = round(
            (self.cpu() - cpu0) * 1000 / max(1, out["requests"]), 2
        )
        return out

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def drf_min_source(peers_work: Path) -> Path | None:
    """The peer's copy (bench's var/peers, copied from ../shared/peers), or None."""
    candidate = peers_work / "drf_min"
    if (candidate / "manage.py").exists():
        return candidate
    for source in (
        ROOT.parent / "shared" / "peers" / "drf_min",
        Path("/work/shared/peers/drf_min"),
    ):
        if (source / "manage.py").exists():
            shutil.copytree(source, candidate, dirs_exist_ok=True)
            return candidate
    return None
