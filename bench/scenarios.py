"""The scenarios of `make bench`, run by bench/run.py once it has made the bench's database and
set Django up (importing this module needs configured settings; it touches nothing).

The figures are taken on the database, broker and queue of this process's environment
(DATABASE_URL, CELERY_BROKER_URL, CELERY_QUEUE, set by bench/run.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

import redis
from django.db import connection
from django.utils import timezone

from bench.meters import (
    CpuMeter,
    PgCounters,
    full_pages_by_relation,
    pct,
    redis_publishes,
)
from bookings.models import Booking, Resource
from bookings.services import booking_create
from devtools import harness

ROOT = Path(__file__).resolve().parent.parent
PG_DSN = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
PG_ADMIN = PG_DSN.rsplit("/", 1)[0] + "/postgres"
REDIS_URL = os.environ["CELERY_BROKER_URL"]
QUEUE = os.environ["CELERY_QUEUE"]
# The command line, given by bench/run.py before any scenario runs.
ARGS = argparse.Namespace()


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment (and so the workers it starts) for a while; then
    the environment as it was (a variable the bench had set keeps its value)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def sh(*cmd: str, env: dict | None = None, timeout: float = 1800) -> str:
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


LOGS = ROOT / "var" / "bench" / "logs"
RESULTS: dict = {"machine": {}, "scenarios": {}}


class Workers:
    """`processes` worker processes on the bench queue: as many `celery worker --pool solo`
    commands (the default, one per core: no parent process relaying each message to a pool
    child), or one command with a pool of that size (--pool-type prefork or threads)."""

    def __init__(self, processes: int, queues: str = QUEUE) -> None:
        solo = ARGS.pool_type == "solo"
        self.workers: list[harness.Worker] = []
        try:
            for i in range(processes if solo else 1):
                worker = harness.Worker(
                    f"bench{i}",
                    settings=os.environ["DJANGO_SETTINGS_MODULE"],
                    queues=queues,
                    env={},  # this process's environment: the bench's database and broker
                    log_path=LOGS / f"worker-{i}.log",
                    concurrency=processes,
                    pool=ARGS.pool_type,
                )
                self.workers.append(worker.start(wait=False))
            for worker in self.workers:  # the pools fork and connect side by side
                worker.wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


def reset_bookings() -> None:
    with connection.cursor() as c:
        c.execute(
            "TRUNCATE bookings_booking, sagas_saga, sagas_sagastep, sagas_sagaevent, "
            "providers_paymentauthorization, providers_inventoryreservation, "
            "providers_emailrecord, providers_fraudscreeningrecord, bookings_idempotencykey, "
            "webhooks_event CASCADE"
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


def create(resource: str, token: str, i: int, owner=None) -> Booking:  # type: ignore[no-untyped-def]
    check_in = date.today() + timedelta(days=1 + i % 360)
    return booking_create(
        owner=owner,
        resource_code=resource,
        check_in=check_in,
        check_out=check_in + timedelta(days=1 + i % 3),
        guest_name="Bench Guest",
        guest_email=f"guest{i}@example.com",
        payment_token=token,
    )


def wait_all_ended(n: int, since: datetime, timeout: float = 900) -> None:
    """Poll until the bookings created since `since` have all ended (the created_at index keeps
    the poll cheap however many bookings the tables already hold)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = (
            Booking.objects.filter(created_at__gte=since)
            .exclude(state__in=Booking.TERMINAL)
            .count()
        )
        if pending == 0:
            return
        time.sleep(0.25)
    raise RuntimeError(f"{pending} of {n} bookings did not end in {timeout}s")


def cpu_per_saga(cpu_split: dict[str, float], n: int) -> dict[str, float]:
    """CpuMeter's seconds by process kind, as milliseconds per saga."""
    return {
        k.removesuffix("_cpu_s"): round(v * 1000 / n, 2)
        for k, v in cpu_split.items()
        if k.endswith("_cpu_s")
    }


def run_sagas(
    label: str,
    kind: str,
    n: int,
    *,
    rate: float | None = None,
    processes: int | None = None,
    fresh: bool = True,
    keep: bool = True,
    pages: bool = False,
    owners: list | None = None,
    queues: str = QUEUE,
    settle=None,  # type: ignore[no-untyped-def]
) -> dict:
    """Create n bookings through the service layer (as fast as possible, or at `rate` per
    second) with real workers running, wait until every saga ended, and measure. `owners`:
    the clients the bookings are made for, in turn (none: no client)."""
    if fresh:
        reset_bookings()
    resources()
    processes = processes or ARGS.processes
    w = Workers(processes, queues)
    sequence = plan(kind, n)
    pg0, pub0, cpu = PgCounters.read(PG_DSN), redis_publishes(REDIS_URL), CpuMeter().start()
    started = time.monotonic()
    created_since = timezone.now()
    for i, (resource, token) in enumerate(sequence):
        if rate:
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
        create(resource, token, i, owners[i % len(owners)] if owners else None)
    submitted = time.monotonic() - started
    wait_all_ended(n, created_since)
    wall = time.monotonic() - started
    cpu_split = cpu.stop()
    time.sleep(1.2)  # the statistics collector flushes about once a second
    pg1 = PgCounters.read(PG_DSN)
    pg = pg0.delta(pg1)
    published = redis_publishes(REDIS_URL) - pub0 - 1
    settled = settle(created_since) if settle else {}  # with the workers still running
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
        "wal_kb_per_saga": round(pg["wal_bytes"] / n / 1024, 1),
        "wal_full_pages_per_saga": round(pg["wal_fpi"] / n, 2),
        "messages_per_saga": round(published / n, 2),
        "cpu_ms_per_saga": cpu_per_saga(cpu_split, n),
        "wall_s": round(wall, 1),
        "offered_rate": rate,
        "worker_processes": processes,
        "pool": ARGS.pool_type,
        **settled,
    }
    if pages:
        result["full_pages_per_saga_by_relation"] = full_pages_by_relation(PG_DSN, pg0, pg1, n)
    if keep:
        RESULTS["scenarios"][label] = result
    print(f"{label}: {json.dumps(result)}", flush=True)
    return result


def run_rows_first(label: str, n: int, *, keep: bool = True) -> dict:
    """The Celery chain peer's method: its saga rows are inserted before its clock starts, and
    the clock runs from the first message sent to the last saga done. Here the same: n bookings
    are created through the service layer (booking, saga and first attempt rows) with their
    first messages held back, the workers started, and then the clock runs while the n first
    messages are sent and the sagas run to `completed`."""

    from sagas.dispatch import Dispatch
    from sagas.models import SagaStep

    reset_bookings()
    resources()
    created_since = timezone.now()
    for i, (resource, token) in enumerate(plan("happy", n)):
        create(resource, token, i)
    # No worker runs yet: drop the first messages the creates sent; they are sent again below,
    # in the timed window.
    redis.Redis.from_url(REDIS_URL).flushdb()
    attempts = list(
        SagaStep.objects.filter(status="scheduled", saga__booking__created_at__gte=created_since)
        .order_by("id")
        .values_list("id", "saga_id")
    )
    w = Workers(ARGS.processes)
    pg0, cpu = PgCounters.read(PG_DSN), CpuMeter().start()
    sent_at = {}
    started = time.time()
    dispatch = Dispatch()
    for step_id, saga_id in attempts:
        sent_at[saga_id] = time.time()
        dispatch.send(step_id, QUEUE, 0)
    wait_all_ended(n, created_since)
    cpu_split = cpu.stop()
    time.sleep(1.2)  # the statistics collector flushes about once a second
    pg = pg0.delta(PgCounters.read(PG_DSN))
    w.stop()
    finished = dict(
        Booking.objects.filter(created_at__gte=created_since).values_list(
            "saga_id", "saga__finished_at"
        )
    )
    last = max(f for f in finished.values() if f).timestamp()
    latencies = [(finished[s].timestamp() - t) * 1000 for s, t in sent_at.items() if finished[s]]
    result = {
        "sagas": n,
        "sagas_per_s": round(n / (last - started), 1),
        "p50_ms": round(pct(latencies, 0.5), 1),
        "p95_ms": round(pct(latencies, 0.95), 1),
        "write_xacts_per_saga": round(pg["write_xacts"] / n, 2),
        "cpu_ms_per_saga": cpu_per_saga(cpu_split, n),
        "worker_processes": ARGS.processes,
        "pool": ARGS.pool_type,
        "note": "rows made before the clock, as the Celery chain peer does",
    }
    if keep:
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


@scenario("orm")
def saga_orm_store() -> None:
    """The same as "saga" written through the ORM store (sagas/store.OrmStore) instead of the
    PostgreSQL one-statement store, to show what the accelerator gains, in the same sitting."""
    with environ({"SAGA_ONE_STATEMENT_RECORD": "0"}):  # read by the workers started now
        run_sagas("happy path, saturation, ORM store", "happy", ARGS.sagas)


@scenario("remote")
def saga_remote_providers() -> None:
    """The peers' workload: the same engine, guard, history and chaining, with providers whose
    work happens on another machine (bench/remote.py) instead of sandboxes that keep their
    ledgers in our database on the same two cores. The peers' steps only return a value."""
    from bench.remote import PROVIDERS

    with environ(PROVIDERS):  # read by the workers started now
        run_sagas("happy path, saturation, remote providers (peers' workload)", "happy", ARGS.sagas)


@scenario("rows-first")
def saga_rows_first() -> None:
    """The peers' workload timed as the Celery chain peer times itself (run_rows_first)."""
    from bench.remote import PROVIDERS

    with environ(PROVIDERS):  # read by the workers started now
        run_rows_first(f"happy path, saturation, {ROWS_FIRST}", ARGS.sagas)


@scenario("rate")
def saga_fixed_rate() -> None:
    run_sagas("happy path, 50/s offered", "happy", min(ARGS.sagas, 1500), rate=50)


class Receiver:
    """The webhook receiver on 127.0.0.1 (bench/receiver.py, a process of its own, as a client's
    server is): it answers 204 over kept-alive connections and notes when each event (its
    webhook-id) arrived. Its CPU is reported apart ("receiver"), not as the pipeline's."""

    def __init__(self) -> None:
        import tempfile

        port = harness.free_port()
        self.file = Path(tempfile.mkstemp(prefix="bench-arrivals-", suffix=".txt")[1])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", str(port), str(self.file)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "READY":
            raise RuntimeError("the webhook receiver did not start")
        self.url = f"http://127.0.0.1:{port}/hook"

    def arrivals(self) -> dict[str, float]:
        """When each webhook-id first arrived (a retry or a redelivery arrives again)."""
        first: dict[str, float] = {}
        text = self.file.read_text()
        for line in text[: text.rfind("\n") + 1].splitlines():  # a line being written waits
            hook_id, _, at = line.partition(" ")
            first.setdefault(hook_id, float(at))
        return first

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.file.unlink(missing_ok=True)


def _clients(endpoint_url: str | None, count: int = 4) -> list:
    """`count` API clients; each with one webhook endpoint at `endpoint_url` (None: none)."""
    from django.contrib.auth import get_user_model

    from webhooks import services as webhooks
    from webhooks.models import Endpoint

    users = [
        get_user_model().objects.get_or_create(username=f"bench-client-{i}")[0]
        for i in range(count)
    ]
    Endpoint.objects.filter(owner__in=users).delete()
    if endpoint_url:
        for user in users:
            webhooks.endpoint_create(owner=user, url=endpoint_url, event_types=[])
    return users


def _deliveries_settled(receiver: Receiver):  # type: ignore[no-untyped-def]
    """After a run: wait for every delivery of its events, then the latency from each event's
    creation (the state change it reports) to its arrival at the receiver."""
    from webhooks.models import Delivery, Event

    def settle(since: datetime) -> dict:
        deadline = time.monotonic() + 300
        pending = Delivery.objects.filter(event__created_at__gte=since, status="pending")
        while pending.exists() and time.monotonic() < deadline:
            time.sleep(0.25)
        events = Event.objects.filter(created_at__gte=since, deliveries__isnull=False)
        created = {str(i): c.timestamp() for i, c in events.values_list("id", "created_at")}
        arrivals = receiver.arrivals()
        latencies = [(arrivals[i] - t) * 1000 for i, t in created.items() if i in arrivals]
        return {
            "events_delivered": len(latencies),
            "events_with_endpoint": len(created),
            "delivery_p50_ms": round(pct(latencies, 0.5), 1) if latencies else None,
            "delivery_p95_ms": round(pct(latencies, 0.95), 1) if latencies else None,
        }

    return settle


WEBHOOKS_PACED = 20.0  # bookings/s offered for the delivery latency below saturation


@scenario("webhooks")
def webhooks_cost() -> None:
    """The booking pipeline for 4 clients with one webhook endpoint each (every booking's
    booking.created and booking.completed delivered, signed, to a receiver on 127.0.0.1), next
    to the same run with no endpoint, in interleaved rounds (ratios within each round; each
    round runs first the side the round before ran second), plus the delivery latency from each
    state change to its arrival, at saturation and with WEBHOOKS_PACED bookings/s offered. The
    workers consume the saga queue and the deliveries' queue (WEBHOOK_QUEUE), as the Procfile's
    worker does."""
    receiver = Receiver()
    queues = f"{QUEUE},{os.environ['WEBHOOK_QUEUE']}"
    n = min(ARGS.sagas, 1500)
    rounds = []
    try:
        for number in range(1, ARGS.rounds + 1):
            # Alternate which goes first (ABBA...): this machine's speed drifts within minutes,
            # and a fixed order would charge the drift to one side of every pair.
            done = {}
            for hooked in (False, True) if number % 2 else (True, False):
                label = "one endpoint per client" if hooked else "no endpoints"
                done[hooked] = run_sagas(
                    f"round {number}: {label}", "happy", n, keep=False, queues=queues,
                    owners=_clients(receiver.url if hooked else None),
                    settle=_deliveries_settled(receiver) if hooked else None,
                )  # fmt: skip
            rounds.append((done[False], done[True]))
        # The delivery latency below saturation: bookings offered at a steady rate, the
        # deliveries sharing the workers with the sagas.
        paced = run_sagas(f"webhooks, {WEBHOOKS_PACED:g} bookings/s offered", "happy",
                          int(WEBHOOKS_PACED * 30), rate=WEBHOOKS_PACED, keep=False,
                          owners=_clients(receiver.url), queues=queues,
                          settle=_deliveries_settled(receiver))  # fmt: skip
    finally:
        receiver.stop()
    RESULTS["scenarios"][f"webhooks: one endpoint per client, {WEBHOOKS_PACED:g}/s offered"] = {
        key: paced[key]
        for key in ("sagas_per_s", "p50_ms", "p95_ms", "delivery_p50_ms", "delivery_p95_ms",
                    "events_delivered", "events_with_endpoint", "offered_rate")
    }  # fmt: skip
    ratios = [h["sagas_per_s"] / p["sagas_per_s"] for p, h in rounds]
    for label, index in (("no endpoints", 0), ("one endpoint per client", 1)):
        runs = [r[index] for r in rounds]
        keys = ("sagas_per_s", "p50_ms", "p95_ms", "write_xacts_per_saga", "messages_per_saga")
        RESULTS["scenarios"][f"webhooks: {label}"] = {
            key: round(pct([r[key] for r in runs], 0.5), 2) for key in keys
        } | {"sagas": n, "rounds": len(runs), "cpu_ms_per_saga": runs[-1]["cpu_ms_per_saga"]}
    hooked_runs = [h for _, h in rounds]
    RESULTS["scenarios"]["webhooks: one endpoint per client"] |= {
        "delivery_p50_ms": pct([h["delivery_p50_ms"] for h in hooked_runs], 0.5),
        "delivery_p95_ms": pct([h["delivery_p95_ms"] for h in hooked_runs], 0.5),
        "events_delivered": [h["events_delivered"] for h in hooked_runs],
        "events_with_endpoint": [h["events_with_endpoint"] for h in hooked_runs],
    }
    RESULTS["scenarios"]["webhooks: throughput with / without, interleaved rounds"] = {
        "median": round(pct(ratios, 0.5), 3),
        "rounds": [round(x, 3) for x in ratios],
    }


@scenario("mix")
def saga_mix() -> None:
    run_sagas("mix 80/10/5/5, saturation", "mix", ARGS.sagas)


@scenario("queries")
def queries_per_saga() -> None:
    """Database statements of one happy saga on the worker's path (chained steps), counted in
    this process: the same engine and providers a worker runs, without Celery around them."""
    from django.test.utils import CaptureQueriesContext

    from sagas import engine
    from sagas.models import SagaStep

    reset_bookings()
    resources()
    counts = []
    for i in range(20):
        with CaptureQueriesContext(connection) as q:
            booking = create("bench-hotel", "tok_visa", i)  # its message waits, unread
            first = SagaStep.objects.get(saga_id=booking.saga_id)
            engine.execute(first.pk, chain_queues=frozenset([QUEUE]))
        assert Booking.objects.get(pk=booking.pk).state == "completed"
        counts.append(len(q.captured_queries) - 1)  # minus the lookup of the first attempt
    RESULTS["scenarios"]["statements per happy saga"] = {
        "statements": sorted(counts)[len(counts) // 2],
        "note": "create + 4 steps chained in one worker, incl. BEGIN/COMMIT and sandbox ledgers",
    }
    print(f"statements per happy saga: {sorted(counts)[len(counts) // 2]}", flush=True)


@scenario("workers")
def worker_scaling() -> None:
    for n in (1, 2, 4):
        run_sagas(f"happy path, {n} worker process(es)", "happy", 1000, processes=n)


def _seeded_id(kind: str, since_ms: int) -> str:
    """SQL for the id of seeded row g, laid out as sagas.models.time_ordered_id makes them (UUID
    version 7: 48 bits of time in ms, here `since_ms` plus g, then random bits), so that the
    history is keyed as a real one would be."""
    return (
        f"(lpad(to_hex({int(since_ms)}::bigint + g), 12, '0') || '7' "
        f"|| substr(md5('{kind}' || g), 1, 3) || '8' || substr(md5('{kind}' || g), 4, 15))::uuid"
    )


def seed_history(total: int) -> None:
    """Bring the tables to `total` finished bookings (each with its saga and four attempt rows),
    written by SQL for speed; only the row counts matter to what is measured after."""
    from bookings.models import Booking as B
    from sagas.models import Saga, SagaStep

    have = B.objects.filter(guest_name="Seeded").count()
    if have >= total:
        return
    resource = resources()["bench-hotel"]
    start, stop = have + 1, total
    t0 = time.monotonic()
    three_days_ago_ms = int((time.time() - 3 * 86400) * 1000)
    saga_id, booking_id = _seeded_id("s", three_days_ago_ms), _seeded_id("b", three_days_ago_ms)
    # References as bookings.models.new_reference makes them (random, so new ones land all over
    # the unique index, as they would in a real history), 10 characters: no collision in 1M.
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    reference = "'BK-' || " + " || ".join(
        f"substr('{alphabet}', get_byte(decode(md5('r' || g), 'hex'), {i}) %% 32 + 1, 1)"
        for i in range(10)
    )
    with connection.cursor() as c:
        c.execute(  # table names from the models, values as parameters
            f"""
            INSERT INTO {Saga._meta.db_table} (id, saga_type, target_id, status, direction,
                current_step, payload, results, reason, last_error, cancel_reason, created_at,
                updated_at, finished_at, version)
            SELECT {saga_id}, 'booking', {booking_id}::text, 'completed',
                'forward', '', '{{}}', '{{}}', '', '', '', now() - interval '2 days',
                now() - interval '2 days', now() - interval '2 days', 5
            FROM generate_series(%s::int, %s::int) g""",  # noqa: S608
            [start, stop],
        )
        c.execute(  # table names from the models, values as parameters
            f"""
            INSERT INTO {B._meta.db_table} (id, reference, owner_id, resource_id, check_in,
                check_out, guest_name, guest_email, payment_token, amount, currency, state,
                state_changed_at, cancellation_reason, attention_reason, fraud_decision,
                payment_status, authorization_ref, room_status, reservation_ref,
                confirmation_sent_at, saga_id, created_at, updated_at)
            SELECT {booking_id}, {reference}, NULL, %s::bigint,
                current_date - 400 + (g %% 300), current_date - 399 + (g %% 300), 'Seeded',
                'seed' || g || '@example.com', 'tok_visa', 100, 'EUR', 'completed',
                now() - interval '2 days', '', '', 'approved', 'authorized', 'auth_s' || g,
                'reserved', 'res_s' || g, now() - interval '2 days', {saga_id},
                now() - interval '2 days', now() - interval '2 days'
            FROM generate_series(%s::int, %s::int) g""",  # noqa: S608
            [resource.pk, start, stop],
        )
        c.execute(  # table names from the models, values as parameters
            f"""
            INSERT INTO {SagaStep._meta.db_table} (saga_id, name, index, direction, round,
                attempt, status, idempotency_key, request, response, error, error_code,
                outcome_unknown, scheduled_for, lease_expires_at, dispatch_count, started_at,
                finished_at, task_id, worker, created_at)
            SELECT {saga_id}, s.name, s.idx, 'action', 1, 1, 'succeeded',
                {saga_id}::text || ':' || s.name || ':action', '{{}}', '{{}}', '', '',
                false, now() - interval '2 days', now() - interval '2 days', 1,
                now() - interval '2 days', now() - interval '2 days', '', '',
                now() - interval '2 days'
            FROM generate_series(%s::int, %s::int) g,
                (VALUES (0, 'fraud_check'), (1, 'preauthorize'), (2, 'confirm'),
                        (3, 'send_email')) AS s(idx, name)""",  # noqa: S608
            [start, stop],
        )
    with connection.cursor() as c:  # autocommit: VACUUM cannot run in a transaction
        # Vacuumed and analyzed now, so that autovacuum does not do it during the measurement.
        c.execute(f"VACUUM (ANALYZE) {Saga._meta.db_table}, {B._meta.db_table}, "
                  f"{SagaStep._meta.db_table}")  # fmt: skip
        # And the seeding's dirty pages written out now, not by the checkpointer while the
        # sagas run (seeding a million bookings dirties most of the tables' and indexes' pages).
        c.execute("CHECKPOINT")
    print(f"seeded {stop - start + 1} bookings in {time.monotonic() - t0:.0f}s", flush=True)


@scenario("growth")
def growth() -> None:
    reset_bookings()
    for total in (10_000, 1_000_000):
        seed_history(total)
        run_sagas(
            f"happy path, {total:,} bookings already there", "happy", 1000, fresh=False, pages=True
        )
        if total == 10_000:
            admin_list(100_000)


def admin_list(total: int) -> None:
    seed_history(total)
    # The admin as an operator opens it (local settings: static files without collectstatic).
    local = {"DJANGO_SETTINGS_MODULE": "config.settings.local", "DJANGO_DEBUG": "0"}
    out = sh(sys.executable, "bench/admin_list.py", "--runs", "5", "--json", env=local)
    figures = json.loads(out)
    RESULTS["scenarios"][f"admin list, {figures['bookings']:,} bookings"] = figures
    print(f"admin list: {out.strip()[:300]}", flush=True)


@scenario("admin")
def admin_only() -> None:
    admin_list(100_000)


@scenario("sweep")
def sweep_1m() -> None:
    """One sweep over 1,000,000 sagas of which 1,000 have an attempt whose lease ran out."""
    from sagas import recovery
    from sagas.models import SagaStep

    seed_history(1_000_000)
    stalled = list(
        SagaStep.objects.filter(name="send_email", saga__booking__guest_name="Seeded").values_list(
            "id", flat=True
        )[:1000]
    )
    SagaStep.objects.filter(pk__in=stalled).update(status="scheduled", dispatch_count=1)
    with connection.cursor() as c:  # only one scheduled attempt per saga, as in real life
        c.execute("ANALYZE")
    timings = []
    for _ in range(3):
        SagaStep.objects.filter(pk__in=stalled).update(
            lease_expires_at=timezone.now() - timedelta(minutes=1), dispatch_count=1
        )
        t0 = time.monotonic()
        report = recovery.sweep(limit=1000)
        timings.append(time.monotonic() - t0)
        assert len(report.redispatched) == 1000, len(report.redispatched)
    SagaStep.objects.filter(pk__in=stalled).update(status="succeeded")
    redis.Redis.from_url(REDIS_URL).flushdb()  # the re-sent messages, unconsumed
    RESULTS["scenarios"]["sweep over 1,000,000 sagas, 1,000 stalled"] = {
        "seconds": round(sorted(timings)[1], 3),
        "runs": [round(t, 3) for t in timings],
    }
    print(f"sweep: {timings}", flush=True)


@scenario("api")
def api_load() -> None:
    """Create and detail through the REST API under locust (50 users) against gunicorn with
    real workers: at about 1 request/s per client, and at saturation."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    reset_bookings()
    resources()
    # tests/api/locustfile.py books the demo's garden room
    Resource.objects.get_or_create(
        code="garden-room",
        defaults={"name": "Garden room", "capacity": 100000, "nightly_price": 120},
    )
    user, _ = get_user_model().objects.get_or_create(username="bench-client")
    token, _ = Token.objects.get_or_create(user=user)
    env = {"API_THROTTLE_CLIENT": "1000000/minute", "API_THROTTLE_ANON": "1000000/minute",
           "BENCH_RESOURCE": "bench-hotel"}  # fmt: skip
    log = open(LOGS / "gunicorn.log", "a")  # noqa: SIM115  (owned by the process)
    # gunicorn's own time for each request (%(L)s), to tell the server's figures from the load
    # generators' (each load's requests are the lines it added to the file).
    access = Path(os.environ.get("BENCH_ACCESS_LOG", LOGS / "gunicorn-access.log"))
    access.touch()
    # gunicorn as deployed (config/gunicorn.py: 2 x cores + 1 processes), on 127.0.0.1.
    web_env = {"WEB_BIND": "127.0.0.1", "PORT": "8799", **env}
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.py",
         "--access-logfile", str(access),
         "--access-logformat", "%(m)s %(s)s %(L)s"],
        env={**os.environ, **web_env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    w = Workers(ARGS.processes)
    loads = {
        # 50 clients each waiting 0.8-1.2 s between requests (about 50 requests/s offered)
        "API, 50 clients at about 1 request/s each": "0.8,1.2",
        # 50 clients with 0.05-0.2 s between requests: as many requests as the machine serves
        "API, 50 clients, saturation": "0.05,0.2",
    }
    try:
        time.sleep(3)
        # Unrecorded warm-up: each gunicorn process's first requests import and connect.
        locust_run(token.key, {**env, "LOCUST_WAIT": "0.5,1"}, seconds=15)
        for label, wait in loads.items():
            mark = access.stat().st_size
            out = locust_run(token.key, {**env, "LOCUST_WAIT": wait})
            RESULTS["scenarios"][label] = out = {**out, "server_side": server_times(access, mark)}
            print(f"{label}: {out}", flush=True)
            if wait != "0.8,1.2":
                continue
            # The same load from 50 threads of the standard library's http.client, timed around
            # each request, before the saturation run leaves the workers a backlog: a second
            # load generator, to tell the server's figures from the load tool's own (locust is
            # one gevent process on the same two cores).
            label = "API, 50 threaded http.client clients at about 1 request/s each"
            mark = access.stat().st_size
            out = threaded_clients(token.key, 8799, seconds=40)
            # (the server's figures include the clients' first, unrecorded 10 s)
            RESULTS["scenarios"][label] = out = {**out, "server_side": server_times(access, mark)}
            print(f"{label}: {out}", flush=True)
        # What locust's batches of new users did to the figures before their first request was
        # staggered (tests/api/locustfile.py): 25 creates sent in the same instant.
        label = "API, 25 creates sent at the same instant"
        time.sleep(3)  # the saturation run's last requests leave the access log first
        mark = access.stat().st_size
        RESULTS["scenarios"][label] = out = {
            **simultaneous_creates(token.key, 8799, 25),
            "server_side": server_times(access, mark),
        }
        print(f"{label}: {out}", flush=True)
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(30)
        w.stop()


def server_times(access: Path, offset: int) -> dict:
    """p50/p95 of gunicorn's own request times, by method, for the lines after `offset`."""
    times: dict[str, list[float]] = {}
    with access.open() as f:
        f.seek(offset)
        for line in f:
            method, _status, seconds = line.split()
            times.setdefault(method, []).append(float(seconds) * 1000)
    return {
        method: {
            "requests": len(v),
            "p50_ms": round(pct(v, 0.5), 1),
            "p95_ms": round(pct(v, 0.95), 1),
        }
        for method, v in times.items()
    }


def simultaneous_creates(token: str, port: int, n: int) -> dict:
    """`n` threads, each on its own connection, released together to send one create: the
    slowest answer is how long the server takes to work off a burst of `n`."""
    import threading

    barrier = threading.Barrier(n)
    times: list[float] = []
    failures = [0]

    def one(i: int) -> None:
        check_in = date.today() + timedelta(days=1 + i)
        body = json.dumps({
            "resource": "garden-room", "check_in": check_in.isoformat(),
            "check_out": (check_in + timedelta(days=2)).isoformat(),
            "guest_name": "Burst", "guest_email": "burst@example.com",
            "payment_token": "tok_visa"})  # fmt: skip
        barrier.wait()
        ms, code, _ = _http(token, port, "POST", "/api/v1/bookings/", body)
        if code == 201:
            times.append(ms)
        else:
            failures[0] += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "created": len(times),
        "failures": failures[0],
        "p50_ms": round(pct(times, 0.5), 1) if times else None,
        "max_ms": round(max(times), 1) if times else None,
    }


def _http(token: str, port: int, method: str, path: str, body: str | None = None):
    """One request on a new connection, timed from connect to the last byte: (ms, status, body)."""
    import http.client
    import uuid

    headers = {"Authorization": f"Token {token}", "Connection": "close"}
    if body:
        headers.update({"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())})
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000, response.status, data


def threaded_clients(token: str, port: int, seconds: float, users: int = 50) -> dict:
    """`users` threads, each creating a booking or reading one of its own (1 create to 3 reads,
    like tests/api/locustfile.py), 0.8 to 1.2 s apart, a new connection per request; the first
    10 s unrecorded. Latency is taken around the whole request, connect to last byte."""
    import random
    import threading

    timings: dict[str, list[float]] = {"POST": [], "GET": []}
    failures = [0]
    recorded_from = time.monotonic() + 10
    stop = recorded_from + seconds

    def request(method: str, path: str, body: str | None = None) -> tuple[float, int, bytes]:
        return _http(token, port, method, path, body)

    def client(n: int) -> None:
        mine: list[str] = []
        rng = random.Random(n)
        while time.monotonic() < stop:
            if not mine or rng.random() < 0.25:
                check_in = date.today() + timedelta(days=rng.randint(1, 300))
                body = json.dumps({
                    "resource": "garden-room", "check_in": check_in.isoformat(),
                    "check_out": (check_in + timedelta(days=2)).isoformat(),
                    "guest_name": "Load Tester", "guest_email": "load@example.com",
                    "payment_token": "tok_visa"})  # fmt: skip
                ms, code, data = request("POST", "/api/v1/bookings/", body)
                method, ok = "POST", code == 201
                if ok:
                    mine.append(json.loads(data)["id"])
            else:
                ms, code, _ = request("GET", f"/api/v1/bookings/{rng.choice(mine)}/")
                method, ok = "GET", code == 200
            if time.monotonic() >= recorded_from:
                timings[method].append(ms)
                failures[0] += not ok
            time.sleep(rng.uniform(0.8, 1.2))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(users)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join()
    out: dict = {"failures": failures[0]}
    for method, values in timings.items():
        out[method] = {
            "requests": len(values),
            "rps": round(len(values) / seconds, 1),
            "p50_ms": round(pct(values, 0.5), 1),
            "p95_ms": round(pct(values, 0.95), 1),
        }
    return out


def locust_run(token: str, env: dict[str, str], seconds: int = 40) -> dict:
    import csv

    prefix = LOGS / "locust"
    # --reset-stats: the figures start once the 50 clients are running (not their ramp-up).
    sh(sys.executable, "-m", "locust", "-f", "tests/api/locustfile.py", "--headless",
       "-H", "http://127.0.0.1:8799", "-u", "50", "-r", "25", "-t", f"{seconds}s",
       "--csv", str(prefix), "--only-summary", "--reset-stats",
       env={"API_TOKEN": token, **env}, timeout=300)  # fmt: skip
    with open(f"{prefix}_stats.csv") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for row in rows:
        if row["Name"] == "Aggregated":
            continue
        out[f"{row['Type']} {row['Name']}"] = {
            "requests": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "rps": round(float(row["Requests/s"]), 1),
            "p50_ms": float(row["50%"]),
            "p95_ms": float(row["95%"]),
        }
    return out


PEERS_WORK = ROOT / "var" / "peers"
ROWS_FIRST = "peers' workload, rows made before the clock (the chain peer's method)"
DBOS = "DBOS (procs 2, concurrency 8, poll 0.01 s)"
CHAIN = "Celery chain (prefork c=2)"


def _peers_ready() -> dict[str, list[str]] | None:
    """The peers' commands, their venv and database made ready; None if ../shared/peers is not
    there."""
    import shutil

    candidates = [Path(os.environ["BENCH_PEERS"])] if os.environ.get("BENCH_PEERS") else []
    candidates += [ROOT.parent / "shared" / "peers", Path("/work/shared/peers")]
    source = next((c for c in candidates if (c / "dbos_saga.py").exists()), None)
    if source is None:
        print("peers: not found (../shared/peers, or set BENCH_PEERS=<dir>); skipped", flush=True)
        return None
    work = PEERS_WORK
    if not (work / ".venv" / "bin" / "python").exists():
        shutil.copytree(source, work, dirs_exist_ok=True)
        sh(sys.executable, "-m", "venv", str(work / ".venv"))
        sh(str(work / ".venv" / "bin" / "pip"), "install", "-q", "dbos", "celery[redis]",
           "psycopg[binary]", "psutil", timeout=900)  # fmt: skip
    else:
        shutil.copytree(source, work, dirs_exist_ok=True)
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname='bench'").fetchone():
            c.execute("CREATE ROLE bench LOGIN PASSWORD 'bench' SUPERUSER")
        if not c.execute("SELECT 1 FROM pg_database WHERE datname='bench'").fetchone():
            c.execute("CREATE DATABASE bench OWNER bench")
    py = str(work / ".venv" / "bin" / "python")
    return {
        DBOS: [py, "dbos_saga.py", "--runs", "1", "--concurrency", "8", "--procs", "2",
               "--preping", "0"],
        CHAIN: [py, "celery_chain.py", "--runs", "1", "--concurrency", "2"],
    }  # fmt: skip


def _run_peer(label: str, cmd: list[str]) -> dict | None:
    done = subprocess.run(
        cmd,
        cwd=PEERS_WORK,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "BENCH_REDIS": "redis://127.0.0.1:6379/13"},
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        print(f"peer {label} failed:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
        return None
    median = json.loads(lines[-1][7:])["median"]
    return {
        "sagas_per_s": round(median["sagas_s"], 1),
        "p50_ms": round(median["p50_ms"], 1),
        "p95_ms": round(median["p95_ms"], 1),
        "write_xacts_per_saga": round(median["write_xacts_per_saga"], 2),
    }


# Our rows in the rounds, and the peers each is compared with. DBOS's clock, like ours, runs
# from the durable creation of each saga (its enqueue); the chain's starts after its rows are
# inserted, so the rows-first run is compared with the chain only.
OURS = {
    "peers' workload (remote providers)": ("remote", (DBOS, CHAIN)),
    ROWS_FIRST: ("rows-first", (CHAIN,)),
    "sandbox ledgers in our database": ("sandbox", (DBOS, CHAIN)),
}


@scenario("peers")
def peers() -> None:
    """The DBOS workflow and the hand-rolled Celery chain from ../shared/peers (their own venv,
    their own database), in rounds interleaved with our happy path on both workloads: ours,
    DBOS, the chain, then again. This machine is shared and its speed drifts by tens of percent
    from one minute to the next, so each ratio is taken within one round (minutes apart at
    most) and the table gives the median of the rounds' ratios, with each round's."""
    from bench.remote import PROVIDERS

    commands = _peers_ready()
    if commands is None:
        return
    rounds: list[dict[str, float]] = []
    peer_figures: dict[str, list[dict]] = {label: [] for label in commands}
    for number in range(1, ARGS.rounds + 1):
        figures: dict[str, float] = {}
        for label, (kind, _) in OURS.items():
            with environ(PROVIDERS if kind != "sandbox" else {}):  # read by the workers
                if kind == "rows-first":
                    ours = run_rows_first(f"round {number}: {label}", ARGS.sagas, keep=False)
                else:
                    ours = run_sagas(f"round {number}: {label}", "happy", ARGS.sagas, keep=False)
            figures[label] = ours["sagas_per_s"]
        for label, cmd in commands.items():
            theirs = _run_peer(label, cmd)
            if theirs is not None:
                peer_figures[label].append(theirs)
                figures[label] = theirs["sagas_per_s"]
                print(f"round {number}: peer {label}: {theirs}", flush=True)
        rounds.append(figures)
    for label, runs in peer_figures.items():
        if runs:
            RESULTS["scenarios"][f"peer: {label}"] = {
                key: round(pct([r[key] for r in runs], 0.5), 2) for key in runs[0]
            } | {"rounds": len(runs)}
    ratios = {}
    for ours_label, (_, compared_with) in OURS.items():
        for peer in compared_with:
            per_round = [r[ours_label] / r[peer] for r in rounds if ours_label in r and peer in r]
            if per_round:
                ratios[f"{ours_label} / {peer}"] = {
                    "median": round(pct(per_round, 0.5), 2),
                    "rounds": [round(x, 2) for x in per_round],
                }
    RESULTS["scenarios"]["ratios, interleaved rounds"] = {"rounds": rounds, "ratios": ratios}


@scenario("front_door")
def front_door() -> None:
    """Bookings through the API against the Procfile's web and worker (bench/front_door.py),
    in rounds interleaved with the DBOS peer (end to end) and drf_min (the create alone)."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from bench import front_door as fd

    parts = set(ARGS.front_parts.split(","))
    resources()
    user, _ = get_user_model().objects.get_or_create(username="bench-client")
    token = Token.objects.get_or_create(user=user)[0].key
    commands = _peers_ready() if "dbos" in parts or "drf_min" in parts else None
    drf_source = fd.drf_min_source(PEERS_WORK) if "drf_min" in parts else None
    layout = fd.Layout(LOGS)
    database = PG_DSN.rsplit("/", 1)[1]
    clients = [int(c) for c in ARGS.front_clients.split(",") if c]
    rounds: list[dict[str, float]] = []
    runs: dict[str, list[dict]] = {}
    described = layout.describe()
    print(f"front door layout: {described}", flush=True)

    def keep(label: str, number: int, figures: dict, result: dict, key: str) -> None:
        runs.setdefault(label, []).append(result)
        figures[label] = result[key]
        print(f"front door round {number}: {label}: {json.dumps(result)}", flush=True)

    for number in range(1, ARGS.front_rounds + 1):
        figures: dict[str, float] = {}
        try:
            layout.start_web()
            if "e2e" in parts:
                layout.start_workers()
                for n_clients in clients:
                    result = fd.end_to_end(
                        layout, token, n_clients, ARGS.front_bookings, dsn=PG_DSN,
                        database=database, resource="bench-hotel", reset=reset_bookings,
                    )  # fmt: skip
                    keep(f"front door, {n_clients} clients", number, figures, result,
                         "bookings_per_s")  # fmt: skip
                if ARGS.front_paced:
                    n_clients, rate = (float(x) for x in ARGS.front_paced.split("@"))
                    result = fd.end_to_end(
                        layout, token, int(n_clients), int(rate * 20), dsn=PG_DSN,
                        database=database, resource="bench-hotel", reset=reset_bookings,
                        rate=rate,
                    )  # fmt: skip
                    keep(f"front door, {int(n_clients)} clients at {rate:g}/s", number, figures,
                         result, "bookings_per_s")  # fmt: skip
                layout.stop_workers()
            if "e2e_remote" in parts:
                # The peers' workload through the front door: the same processes, with the
                # providers' own work on another machine (bench/remote.py), as DBOS's steps do
                # none; the engine, guard, history and events are unchanged.
                from bench.remote import PROVIDERS

                with environ(PROVIDERS):  # read by the workers started now
                    layout.start_workers()
                result = fd.end_to_end(
                    layout, token, clients[0], ARGS.front_bookings, dsn=PG_DSN,
                    database=database, resource="bench-hotel", reset=reset_bookings,
                )  # fmt: skip
                keep(f"{REMOTE_FRONT}, {clients[0]} clients", number, figures, result,
                     "bookings_per_s")  # fmt: skip
                layout.stop_workers()
            if "api" in parts:
                reset_bookings()
                for key in (False, True):
                    result = fd.api_alone(layout, token, ARGS.front_api_seconds,
                                          "bench-hotel", idempotency_key=key)  # fmt: skip
                    label = "API create alone" + (", Idempotency-Key" if key else "")
                    keep(label, number, figures, result, "req_per_s")
                reset_bookings()
        finally:
            layout.stop()
        if drf_source is not None:
            peer = fd.DrfMin(drf_source, PG_ADMIN, REDIS_URL, LOGS)
            try:
                keep("peer drf_min", number, figures, peer.measure(ARGS.front_api_seconds),
                     "req_per_s")  # fmt: skip
            finally:
                peer.stop()
                redis.Redis.from_url(REDIS_URL).flushdb()  # its unconsumed messages
        if commands is not None and "dbos" in parts:
            theirs = _run_peer(DBOS, commands[DBOS])
            if theirs is not None:
                keep("peer DBOS", number, figures, theirs, "sagas_per_s")
        rounds.append(figures)
    pairs = [(f"front door, {c} clients", "peer DBOS") for c in clients] + [
        (f"{REMOTE_FRONT}, {clients[0]} clients", "peer DBOS"),
        ("API create alone", "peer drf_min"),
        ("API create alone, Idempotency-Key", "peer drf_min"),
    ]
    ratios = {}
    for ours, theirs in pairs:
        per_round = [r[ours] / r[theirs] for r in rounds if r.get(theirs) and ours in r]
        if per_round:
            ratios[f"{ours} / {theirs}"] = {
                "median": round(pct(per_round, 0.5), 2),
                "rounds": [round(x, 2) for x in per_round],
            }
    for label, results in runs.items():
        summary = {}
        for key, value in results[0].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                summary[key] = round(pct([r[key] for r in results], 0.5), 2)
        if "cpu_ms_per_booking" in results[0]:
            summary["cpu_ms_per_booking"] = {
                k: round(pct([r["cpu_ms_per_booking"][k] for r in results], 0.5), 2)
                for k in results[0]["cpu_ms_per_booking"]
            }
        if label.startswith("front door"):
            summary["sagas_per_s"] = summary["bookings_per_s"]  # the table's column
            summary["p50_ms"], summary["p95_ms"] = (
                summary["create_p50_ms"],
                summary["create_p95_ms"],
            )
        RESULTS["scenarios"][label] = {**summary, "rounds": len(results), "layout": described}
    RESULTS["scenarios"]["front door ratios, interleaved rounds"] = {
        "rounds": rounds, "ratios": ratios, "layout": described,
    }  # fmt: skip
    for label, r in ratios.items():
        each = ", ".join(f"{x:.2f}" for x in r["rounds"])
        print(f"front door ratio {label}: {r['median']:.2f}x (rounds: {each})", flush=True)


REMOTE_FRONT = "front door, providers on another machine (peers' workload)"


@scenario("dbos")
def dbos_alone() -> None:
    """The DBOS peer alone, once (bench/ab.py runs it between the two checkouts' rounds)."""
    commands = _peers_ready()
    if commands is None:
        return
    theirs = _run_peer(DBOS, commands[DBOS])
    if theirs is not None:
        RESULTS["scenarios"][f"peer: {DBOS}"] = theirs


def table(scenarios: dict) -> str:
    lines = ["| scenario | sagas/s | p50 ms | p95 ms | writes/saga | msgs/saga | CPU ms/saga |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in scenarios.items():
        if "sagas_per_s" not in r:
            continue
        cpu = r.get("cpu_ms_per_saga")
        cpu_s = " ".join(f"{k} {v:g}" for k, v in cpu.items()) if cpu else ""
        lines.append(
            f"| {name} | {r['sagas_per_s']} | {r.get('p50_ms', '')} | {r.get('p95_ms', '')} "
            f"| {r.get('write_xacts_per_saga', '')} | {r.get('messages_per_saga', '')} | {cpu_s} |"
        )
    others = {
        k: v
        for k, v in scenarios.items()
        if "sagas_per_s" not in v and "ratios, interleaved rounds" not in k
    }
    for name, r in others.items():
        lines.append(f"\n{name}: {json.dumps(r)}")
    rounds = {
        **scenarios.get("ratios, interleaved rounds", {}).get("ratios", {}),
        **scenarios.get("front door ratios, interleaved rounds", {}).get("ratios", {}),
    }
    for label, r in rounds.items():
        each = ", ".join(f"{x:.2f}" for x in r["rounds"])
        lines.append(f"\nratio {label}: {r['median']:.2f}x (median of rounds: {each})")
    return "\n".join(lines)


def chart(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    rows = [(k, v["sagas_per_s"]) for k, v in RESULTS["scenarios"].items() if "sagas_per_s" in v]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(rows) + 1.5))
    names = [textwrap.fill(k, 48) for k, _ in rows]
    colors = ["#9aa5b1" if k.startswith("peer: ") else "#2f6f9f" for k, _ in rows]
    ax.barh(names, [v for _, v in rows], color=colors)
    ax.set_xlim(0, max(v for _, v in rows) * 1.12)
    ax.invert_yaxis()
    ax.set_xlabel("sagas per second (4 steps, durable), higher is better")
    ax.set_title(f"make bench, {date.today().isoformat()}, {os.cpu_count()} cores")
    for y, (_, v) in enumerate(rows):
        ax.text(v, y, f" {v:g}", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(args: argparse.Namespace) -> int:
    """Run the scenarios the command line asks for; print the table and write the results."""
    ARGS.__dict__.update(vars(args))
    LOGS.mkdir(parents=True, exist_ok=True)
    only = [s for s in ARGS.only.split(",") if s] or list(SCENARIOS)
    skip = set(ARGS.skip.split(","))
    for name in only:
        if name in skip:
            continue
        try:
            SCENARIOS[name]()
        except Exception as exc:  # one broken scenario must not lose the others' figures
            RESULTS["scenarios"][f"{name} (failed)"] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"scenario {name} failed: {exc!r}", flush=True)
    ARGS.out.mkdir(parents=True, exist_ok=True)
    stem = ARGS.out / date.today().isoformat()
    RESULTS["machine"] = {"cores": os.cpu_count(), "uname": " ".join(os.uname())}
    this_run = dict(RESULTS["scenarios"])
    if stem.with_suffix(".json").exists():  # a run of a subset adds to the same day's figures
        earlier = json.loads(stem.with_suffix(".json").read_text()).get("scenarios", {})
        RESULTS["scenarios"] = {**earlier, **RESULTS["scenarios"]}
    stem.with_suffix(".json").write_text(json.dumps(RESULTS, indent=2, default=str))
    chart(stem.with_suffix(".png"))
    # The table and its ratios: this run's figures only (one sitting), not the day's others.
    print("\n" + table(this_run))
    print(f"\nwrote {stem}.json and {stem}.png")
    return 0
