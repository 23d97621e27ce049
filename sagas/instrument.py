"""Observability hooks: the engine calls these at each point where a saga or an attempt changes,
and this module turns them into Prometheus metrics and one structured log line each. Keeping
every metric and log call here leaves the engine readable and the metric names in one place.

Counters move only when the engine's transaction commits (`transaction.on_commit`): an outcome
that is rolled back, or dropped as a duplicate, is not counted. In worker processes the metrics
are written to PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode) when it is set.

Log lines about a saga carry `saga_id`, `saga_type`, `step`, `direction`, `attempt` and the
payload fields named in settings.SAGA_LOG_PAYLOAD_FIELDS (the booking `reference`); while a
worker runs a step they are also bound to the log context (`bind_attempt`), so that every other
line logged meanwhile (a provider's, Celery's) carries them too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("sagas")

SAGAS_STARTED = Counter("saga_started", "Sagas started.", ["saga_type"])
SAGAS_COMPLETED = Counter("saga_completed", "Sagas whose every step succeeded.", ["saga_type"])
SAGAS_COMPENSATED = Counter(
    "saga_cancelled",
    "Sagas turned back and fully undone, by reason (fraud_rejected, payment_declined, "
    "unavailable, step_failed, timeout, customer_cancelled, operator_cancelled...).",
    ["saga_type", "reason"],
)
SAGAS_PARKED = Counter(
    "saga_parked", "Sagas parked for an operator (requires attention).", ["saga_type"]
)
STEP_ATTEMPTS = Counter(
    "saga_step_attempts",
    "Step attempts with a recorded outcome, by step, direction and outcome (succeeded, "
    "retrying, failed, deferred).",
    ["saga_type", "step", "direction", "outcome"],
)
STEP_RETRIES = Counter(
    "saga_step_retries",
    "Failed attempts for which a retry was scheduled, by step.",
    ["saga_type", "step", "direction"],
)
STEP_FAILURES = Counter(
    "saga_step_failures",
    "Failed attempts (retried or not), by step and error kind (transient, permanent).",
    ["saga_type", "step", "direction", "kind"],
)
STEP_DURATION = Histogram(
    "saga_step_duration_seconds",
    "Time a step's side effect took (provider call), by step.",
    ["saga_type", "step", "direction"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def saga_fields(saga: Any, row: Any = None) -> dict[str, Any]:
    """What identifies a saga (and an attempt of it) in a log line."""
    fields: dict[str, Any] = {"saga_id": str(saga.pk), "saga_type": saga.saga_type}
    for name in getattr(settings, "SAGA_LOG_PAYLOAD_FIELDS", ()):
        if name in (saga.payload or {}):
            fields[name] = saga.payload[name]
    if row is not None:
        fields.update(step=row.name, direction=row.direction, attempt=row.attempt)
    return fields


def bind_attempt(saga: Any, row: Any) -> None:
    """A worker is about to run this attempt: every line it logs until the task ends carries
    the saga and the attempt (Celery's task_prerun clears the context before the next task)."""
    structlog.contextvars.bind_contextvars(**saga_fields(saga, row))


def _after_commit(fn: Any) -> None:
    transaction.on_commit(fn)


def saga_started(saga: Any) -> None:
    def emit() -> None:
        SAGAS_STARTED.labels(saga.saga_type).inc()
        log.info("saga started", extra=saga_fields(saga))

    _after_commit(emit)


def attempt_recorded(saga: Any, row: Any, outcome: Any, label: str) -> None:
    """An attempt's outcome was recorded: `label` is what the engine did with it (succeeded,
    retrying, failed, deferred)."""
    error = outcome.error
    kind = "" if error is None else type(error).__name__.replace("Error", "").lower()
    duration = (outcome.finished_at - outcome.started_at).total_seconds()
    labels = (saga.saga_type, row.name, row.direction)
    fields = {**saga_fields(saga, row), "outcome": label, "duration_ms": round(duration * 1000)}
    if error is not None:
        fields.update(error=error.message, error_code=error.code)

    def emit() -> None:
        STEP_ATTEMPTS.labels(*labels, label).inc()
        if label != "deferred":
            # A deferred attempt was not tried: it has no duration and is no failure.
            STEP_DURATION.labels(*labels).observe(duration)
            if error is not None:
                STEP_FAILURES.labels(*labels, kind).inc()
        if label == "retrying":
            STEP_RETRIES.labels(*labels).inc()
        level = logging.INFO if error is None or label == "deferred" else logging.WARNING
        log.log(level, "step %s", label, extra=fields)

    _after_commit(emit)


def saga_completed(saga: Any) -> None:
    def emit() -> None:
        SAGAS_COMPLETED.labels(saga.saga_type).inc()
        log.info("saga completed", extra=saga_fields(saga))

    _after_commit(emit)


def saga_compensated(saga: Any, reason: str) -> None:
    def emit() -> None:
        SAGAS_COMPENSATED.labels(saga.saga_type, reason or "unknown").inc()
        log.info("saga cancelled: every step undone", extra={**saga_fields(saga), "reason": reason})

    _after_commit(emit)


def saga_parked(saga: Any, why: str) -> None:
    def emit() -> None:
        SAGAS_PARKED.labels(saga.saga_type).inc()
        log.warning("saga requires attention", extra={**saga_fields(saga), "reason": why})

    _after_commit(emit)


# --- read at scrape time -------------------------------------------------------------------------


def oldest_stuck_since(now: datetime | None = None) -> datetime | None:
    """When the longest-stuck saga (sagas.recovery.stuck_condition) got stuck: the end of its
    attempt's lease, or its last change when nothing is scheduled. None when none is stuck.
    Sagas parked for an operator are counted by saga_by_status{status="requires_attention"}."""
    from .models import Saga, SagaStep
    from .recovery import stuck_condition

    now = now or timezone.now()
    stuck = Saga.objects.filter(stuck_condition(now))
    lease_ran_out = SagaStep.objects.filter(
        status=SagaStep.Status.SCHEDULED, lease_expires_at__lt=now, saga__in=stuck
    ).aggregate(since=Min("lease_expires_at"))["since"]
    nothing_scheduled = (
        stuck.exclude(steps__status=SagaStep.Status.SCHEDULED)
        .aggregate(since=Min("updated_at"))
        .get("since")
    )
    candidates = [t for t in (lease_ran_out, nothing_scheduled) if t is not None]
    return min(candidates) if candidates else None


class SagaStateCollector(Collector):
    """Gauges read from the database when /metrics is scraped (the same for every process, so
    they are served by the web's /metrics only)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        since = oldest_stuck_since(now)
        age = GaugeMetricFamily(
            "saga_oldest_stuck_age_seconds",
            "Seconds since the longest-stuck saga got stuck (active, and its attempt's lease ran "
            "out or nothing is scheduled); 0 when none is.",
        )
        age.add_metric([], (now - since).total_seconds() if since else 0.0)
        yield age
        by_status = GaugeMetricFamily("saga_by_status", "Sagas by status.", labels=["status"])
        for status, n in _status_counts():
            by_status.add_metric([status], n)
        yield by_status


def _status_counts() -> list[tuple[str, int]]:
    from .models import Saga

    rows = Saga.objects.values("status").order_by().annotate(n=Count("pk"))
    found = {row["status"]: row["n"] for row in rows}
    return [(status, found.get(status, 0)) for status in Saga.Status.values]
