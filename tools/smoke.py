"""Fresh-clone smoke test: what a new user does first, walked by CI (`make smoke`, .ci/run).

For each backend (sqlite: SQLite + the filesystem broker; redis: PostgreSQL + Redis;
rabbitmq: PostgreSQL + RabbitMQ), on a fresh `git clone` of this repository's HEAD:

1. `make run` in the background (its own process group, like a terminal), on a free port;
2. wait until it serves, on 127.0.0.1 only (HOST is not given);
3. run the exact curl line the banner printed (it asks `Prefer: wait`), and poll the booking
   until it is `completed`; then the banner's follow and cancel lines with its id (the README's
   quick start), and poll until the booking is `cancelled`;
4. send concurrent creates (50 by default) and fail on any 5xx or broken connection, then wait
   for those bookings to settle;
5. Ctrl-C (SIGINT to the process group), and fail if any process it started is left, or if
   honcho had to SIGKILL one.

The clone gets a virtualenv of its own with what `make run` installs and nothing more (`make
install-run`: requirements/dev-server.txt, the runtime set plus honcho), so that a runtime import
missing from that lock fails here and not in production; `--venv PATH` reuses a virtualenv
instead (a symlink, faster, but it proves less). PostgreSQL gets a fresh
database (SMOKE_DATABASE), Redis the DB numbers SMOKE_REDIS_DBS, RabbitMQ a vhost of its own,
deleted afterwards. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = {"completed", "cancelled", "requires_attention"}
# What `make run` reads; the smoke sets each backend's own and nothing else leaks in.
BACKEND_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "COORDINATION_CACHE_URL",
    "DJANGO_SETTINGS_MODULE",
    "DATA_DIR",
    "PORT",
    "HOST",
)


class SmokeFailure(Exception):
    pass


def log(message: str) -> None:
    print(f"[smoke {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    """A port for `make run` whose next one (its webhook receiver's) is free too, both below the
    kernel's ephemeral range: a port the kernel hands out (bind to 0) may be given meanwhile to
    an outgoing connection (the worker's to the broker), and the receiver then failed to bind
    its port (EADDRINUSE) and took `make run` down with it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            ephemeral = int(fh.read().split()[0])
    except OSError:  # not Linux
        ephemeral = 32768
    draw = random.Random()  # nosec B311 (a port, not a secret)
    for _ in range(200):
        port = draw.randrange(10000, ephemeral - 2)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise SmokeFailure("no two free ports in a row below the ephemeral range")


def run(*cmd: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, **kwargs)


# --- HTTP ---------------------------------------------------------------------------------


def request(
    method: str, url: str, token: str | None = None, body: Any = None, timeout: float = 60
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; (status, headers, body). Connection errors raise OSError."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = str(uuid.uuid4())
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310  # nosec B310
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def wait_until_serving(base: str, proc: subprocess.Popen[bytes], log_path: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 300:
        if proc.poll() is not None:
            raise SmokeFailure(f"make run exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            status, _, _ = request("GET", f"{base}/api/v1/resources/", timeout=5)
            if status in (200, 401, 403):
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.5)
    raise SmokeFailure(f"make run did not serve within 300 s:\n{tail(log_path)}")


def booking_state(base: str, token: str, booking_id: str) -> str:
    status, headers, body = request("GET", f"{base}/api/v1/bookings/{booking_id}/", token)
    while status == 429:  # polling 50 bookings runs into the client's throttle: wait, as told
        time.sleep(float(headers.get("Retry-After", "1")))
        status, headers, body = request("GET", f"{base}/api/v1/bookings/{booking_id}/", token)
    if status != 200:
        raise SmokeFailure(f"GET booking {booking_id}: {status} {body[:300]!r}")
    return str(json.loads(body)["state"])


def wait_for_states(
    base: str, token: str, ids: list[str], accepted: set[str], timeout: float
) -> Counter[str]:
    """Poll until every booking is in a terminal state; the states, or a failure."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while True:
        for booking_id in ids:
            if states.get(booking_id) not in TERMINAL:
                states[booking_id] = booking_state(base, token, booking_id)
        if all(s in TERMINAL for s in states.values()):
            break
        if time.monotonic() > deadline:
            counts = Counter(states.values())
            raise SmokeFailure(f"bookings not settled after {timeout} s: {dict(counts)}")
        time.sleep(1)
    counts = Counter(states.values())
    unexpected = set(counts) - accepted
    if unexpected:
        raise SmokeFailure(f"bookings ended {dict(counts)}; expected only {sorted(accepted)}")
    return counts


# --- the banner -----------------------------------------------------------------------------


def banner_curl(text: str) -> str:
    """The curl command the banner printed for a create: from `curl ... -X POST` to the end of
    its single-quoted JSON body (continuation lines included), verbatim."""
    match = re.search(r"^[ \t]*(curl [^\n]*-X POST.*?\}')", text, re.S | re.M)
    if not match:
        raise SmokeFailure(f"no create curl line in the banner:\n{text[-3000:]}")
    return match.group(1)


def wait_for_banner(log_path: Path, timeout: float = 150) -> str:
    """The banner's create curl line, once make run has printed it: the banner waits for the
    processes to be up (demo_info --after-start), so it may come after the web answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return banner_curl(log_path.read_text(errors="replace"))
        except SmokeFailure:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def run_banner_curl(command: str, base: str, log_path: Path) -> tuple[str, str]:
    """Run the banner's curl line as a user pastes it; the booking id and the API token."""
    token_match = re.search(r"Authorization: Token ([0-9a-f]+)", command)
    if not token_match:
        raise SmokeFailure(f"no API token in the banner's curl line: {command}")
    if base not in command:
        raise SmokeFailure(f"the banner's curl line does not target {base}: {command}")
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, check=False
    )
    try:
        body = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SmokeFailure(
            f"the banner's curl line answered no JSON (rc={done.returncode}): {done.stdout!r} "
            f"{done.stderr!r}\n{tail(log_path)}"
        ) from None
    if "id" not in body:
        raise SmokeFailure(f"the banner's curl line did not create a booking: {body}")
    log(f"banner curl: {time.monotonic() - started:.1f} s, state {body.get('state')}")
    return str(body["id"]), token_match.group(1)


def banner_booking_lines(text: str) -> tuple[str, str]:
    """The banner's follow and cancel curl lines (`<id>` still in them), verbatim."""
    follow = re.search(r"^[ \t]*(curl -s [^\n]*/bookings/<id>/ [^\n]*)$", text, re.M)
    cancel = re.search(r"^[ \t]*(curl -s -X POST [^\n]*/bookings/<id>/cancel/ [^\n]*)$", text, re.M)
    if not follow or not cancel:
        raise SmokeFailure(f"no follow or cancel curl line in the banner:\n{text[-3000:]}")
    return follow.group(1), cancel.group(1)


def run_banner_line(command: str, booking_id: str) -> dict[str, Any]:
    """A banner curl line with the booking's id in place of `<id>`, run as a user pastes it;
    the JSON it answered."""
    line = command.replace("<id>", booking_id)
    done = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, timeout=120, check=False
    )
    try:
        body: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SmokeFailure(
            f"{line} answered no JSON (rc={done.returncode}): {done.stdout!r} {done.stderr!r}"
        ) from None
    return body


def follow_and_cancel(text: str, base: str, token: str, booking_id: str) -> None:
    """The banner's follow line shows the completed booking; its cancel line is accepted and
    the booking ends `cancelled` (a completed booking is undone at once)."""
    follow, cancel = banner_booking_lines(text)
    if base not in follow or base not in cancel:
        raise SmokeFailure(f"the banner's follow/cancel lines do not target {base}")
    shown = run_banner_line(follow, booking_id)
    if shown.get("id") != booking_id or shown.get("state") != "completed":
        raise SmokeFailure(f"the banner's follow line answered {shown}")
    answered = run_banner_line(cancel, booking_id)
    if answered.get("state") not in ("compensating", "cancelled"):
        raise SmokeFailure(f"the banner's cancel line answered {answered}")
    wait_for_states(base, token, [booking_id], {"cancelled"}, timeout=60)


# --- load -------------------------------------------------------------------------------------


def concurrent_creates(
    base: str, token: str, clients: int, per_client: int
) -> tuple[Counter[str], list[str], float]:
    """`clients` threads released together, each sending `per_client` creates one after the
    other; status counts (a connection error counts as `error`), the created ids, seconds."""
    statuses: Counter[str] = Counter()
    ids: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(clients)
    first_night = date.today() + timedelta(days=30)

    def client(n: int) -> None:
        gate.wait()
        for i in range(per_client):
            check_in = first_night + timedelta(days=(n * per_client + i) % 600)
            body = {
                "resource": "garden-room",
                "check_in": check_in.isoformat(),
                "check_out": (check_in + timedelta(days=1)).isoformat(),
                "guest_name": f"Smoke Guest {n}",
                "guest_email": f"smoke{n}@example.com",
                "payment_token": "tok_visa",
            }
            try:
                status, _, raw = request("POST", f"{base}/api/v1/bookings/", token, body)
            except OSError as exc:
                with lock:
                    statuses[f"error ({type(exc).__name__})"] += 1
                continue
            with lock:
                statuses[str(status)] += 1
                if status == 201:
                    ids.append(str(json.loads(raw)["id"]))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses, ids, time.monotonic() - started


# --- processes --------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live process below `root` (honcho starts each in a session of its own, so a
    process group says nothing): pid -> start time."""
    parents: dict[int, int] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat:
                parents[int(entry.name)], starts[int(entry.name)] = stat
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = starts[pid]
                frontier.append(pid)
    return found


def alive(processes: dict[int, int]) -> dict[int, int]:
    """Those of `processes` still running (same pid and start time: not a reused pid)."""
    left = {}
    for pid, start in processes.items():
        stat = _stat(pid)
        if stat and stat[1] == start:
            left[pid] = start
    return left


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- backends ---------------------------------------------------------------------------------


def psql(*sql: str) -> None:
    args = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1"]
    for statement in sql:
        args += ["-c", statement]
    run(*args)


def backend_env(name: str, tmp: Path) -> tuple[dict[str, str], list[list[str]]]:
    """The environment `make run` gets for a backend, and the commands that clean it up."""
    env = {k: v for k, v in os.environ.items() if k not in BACKEND_VARIABLES}
    cleanup: list[list[str]] = []
    if name == "sqlite":
        return env, cleanup
    database = os.environ.get("SMOKE_DATABASE", "bookingops_smoke")
    psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', f'CREATE DATABASE "{database}"')
    cleanup.append(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c",
         f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)']
    )  # fmt: skip
    broker_db, cache_db = os.environ.get("SMOKE_REDIS_DBS", "3,4").split(",")
    for db in (broker_db, cache_db):
        run("redis-cli", "-h", "127.0.0.1", "-n", db, "flushdb")
    cache = f"redis://127.0.0.1:6379/{cache_db}"
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{database}",
        CACHE_URL=cache,
        COORDINATION_CACHE_URL=cache,
    )
    if name == "redis":
        env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:6379/{broker_db}"
    elif name == "rabbitmq":
        vhost = f"smoke-{os.getpid()}"
        run("rabbitmqctl", "-q", "add_vhost", vhost)
        cleanup.append(["rabbitmqctl", "-q", "delete_vhost", vhost])
        run("rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        env["CELERY_BROKER_URL"] = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    else:
        raise SystemExit(f"unknown backend {name!r}: sqlite, redis or rabbitmq")
    return env, cleanup


def smoke(name: str, clone: Path, port: int, clients: int, per_client: int) -> str:
    """One backend, start to stop; a summary line, or SmokeFailure."""
    tmp = clone.parent
    env, cleanup = backend_env(name, tmp)
    env["PORT"] = str(port)
    base = f"http://127.0.0.1:{port}"
    log_path = tmp / f"make-run-{name}.log"
    out = open(log_path, "wb")  # noqa: SIM115  (closed in finally)
    log(f"{name}: make run PORT={port} (log {log_path})")
    proc = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=clone,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, as a terminal gives it
    )
    started: dict[int, int] = {}
    try:
        serving = wait_until_serving(base, proc, log_path)
        log(f"{name}: serving after {serving:.1f} s")
        sockets = run("ss", "-Hltn", f"sport = :{port}").stdout.splitlines()
        local = {line.split()[3] for line in sockets if line.strip()}
        if local != {f"127.0.0.1:{port}"}:
            raise SmokeFailure(f"{name}: listening on {sorted(local)}, not 127.0.0.1 only")
        booking_id, token = run_banner_curl(wait_for_banner(log_path), base, log_path)
        wait_for_states(base, token, [booking_id], {"completed"}, timeout=120)
        log(f"{name}: the banner's booking {booking_id} completed")
        follow_and_cancel(log_path.read_text(errors="replace"), base, token, booking_id)
        log(f"{name}: the banner's follow and cancel lines: {booking_id} cancelled")

        statuses, ids, seconds = concurrent_creates(base, token, clients, per_client)
        total = sum(statuses.values())
        rate = total / seconds
        log(f"{name}: {total} creates from {clients} clients in {seconds:.1f} s ({rate:.1f}/s): "
            f"{dict(statuses)}")  # fmt: skip
        bad = {s: n for s, n in statuses.items() if not s.isdigit() or int(s) >= 500}
        if bad:
            raise SmokeFailure(f"{name}: server errors under {clients} concurrent clients: {bad}")
        settled = wait_for_states(
            base, token, ids, {"completed", "cancelled"}, timeout=120 + total / 2
        )
        log(f"{name}: all {len(ids)} settled: {dict(settled)}")

        started = descendants(proc.pid)
        log(f"{name}: Ctrl-C ({len(started)} processes under make)")
        stop_began = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            raise SmokeFailure(f"{name}: make run still running 60 s after Ctrl-C") from None
        deadline = time.monotonic() + 10
        while alive(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = alive(started)
        if left:
            ps = run("ps", "-o", "pid,args", "-p", ",".join(map(str, left))).stdout
            raise SmokeFailure(f"{name}: processes left after Ctrl-C:\n{ps}")
        output = log_path.read_text(errors="replace")
        killed = [line for line in output.splitlines() if "rc=-9" in line]
        if killed:
            raise SmokeFailure(f"{name}: honcho had to SIGKILL: {killed}")
        stopped = time.monotonic() - stop_began
        return (
            f"{name}: served after {serving:.0f} s; banner booking completed, followed and "
            f"cancelled; {total} creates "
            f"({clients} clients) {dict(statuses)} at {rate:.1f}/s; stopped in {stopped:.1f} s, "
            "no process left"
        )
    except BaseException:
        print(tail(log_path), flush=True)
        raise
    finally:
        for pid in alive({**started, **descendants(proc.pid)}):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        out.close()
        for cmd in cleanup:
            subprocess.run(cmd, capture_output=True, timeout=120, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,redis", help="sqlite,redis,rabbitmq")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--creates-per-client", type=int, default=1)
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("SMOKE_PORT", "0")), help="0: a free one"
    )
    parser.add_argument("--repo", default=str(ROOT), help="what to clone (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the clone and its logs")
    parser.add_argument(
        "--venv", help="reuse this virtualenv (symlinked) instead of `make install-run`"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="smoke-"))
    clone = tmp / "clone"
    summaries = []
    try:
        run("git", "clone", "-q", args.repo, str(clone))
        head = run("git", "-C", str(clone), "log", "-1", "--format=%h %s").stdout.strip()
        log(f"fresh clone of {args.repo} at {head}")
        if args.venv:
            (clone / ".venv").symlink_to(Path(args.venv).resolve())
        else:
            started = time.monotonic()
            installed = subprocess.run(
                ["make", "-C", str(clone), "install-run"],
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
            if installed.returncode != 0:
                output = installed.stdout + installed.stderr
                raise SmokeFailure(f"make install-run failed:\n{output[-4000:]}")
            log(f"make install-run (runtime + dev-server) in {time.monotonic() - started:.0f} s")
        for name in args.backends.split(","):
            summaries.append(
                smoke(name, clone, args.port or free_port(), args.clients, args.creates_per_client)
            )
    except SmokeFailure as failure:
        log(f"FAILED: {failure}")
        return 1
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for line in summaries:
        log(f"ok: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
