"""Read-only queries for the operator console (admin) and the on-call commands. Nothing here
changes a row: state changes go through bookings.services. Each list query is built so that a
page of any size costs the same number of queries (annotations and subqueries, no per-row
lookups)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import (
    BooleanField,
    Case,
    Count,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.utils import timezone

from sagas import engine, recovery
from sagas.models import Saga, SagaEvent, SagaStep

from .models import Booking
from .providers.models import (
    EmailRecord,
    FraudScreeningRecord,
    InventoryReservation,
    PaymentAuthorization,
)

FAILED_STATUSES = (SagaStep.Status.FAILED, SagaStep.Status.RETRYING)


def _saga_of(booking: Booking) -> uuid.UUID:
    """The booking's saga id: every booking is created together with its saga."""
    assert booking.saga_id is not None, f"booking {booking.reference} has no saga"
    return booking.saga_id


# --- stuck: the engine's one definition (sagas.recovery.stuck_condition) -------------------


def stuck_condition(now: datetime | None = None) -> Q:
    """Bookings whose saga is stuck (sagas.recovery.stuck_condition)."""
    return recovery.stuck_condition(now, through="saga")


def stuck_bookings(now: datetime | None = None) -> QuerySet[Booking]:
    return Booking.objects.filter(stuck_condition(now))


# --- the bookings list ---------------------------------------------------------------------


def booking_list(now: datetime | None = None) -> QuerySet[Booking]:
    """Bookings with what the list shows, in one query per page: the latest failed attempt
    (step, direction, error) and whether the booking is stuck."""
    latest_failure = SagaStep.objects.filter(
        saga_id=OuterRef("saga_id"), status__in=FAILED_STATUSES
    ).order_by("-id")
    return (
        Booking.objects.select_related("resource")
        .defer("payment_token")
        .annotate(
            failing_step=Subquery(latest_failure.values("name")[:1]),
            failing_direction=Subquery(latest_failure.values("direction")[:1]),
            failing_error=Subquery(latest_failure.values("error")[:1]),
            is_stuck=Case(
                When(stuck_condition(now), then=Value(True)),
                default=Value(False),
                output_field=BooleanField(),
            ),
        )
    )


def booking_by_reference(reference: str) -> Booking | None:
    return Booking.objects.select_related("saga", "resource").filter(reference=reference).first()


# --- one booking's page ----------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """One attempt of a step or a compensation, as the booking page shows it."""

    id: int
    name: str
    direction: str
    round: int
    attempt: int
    status: str
    status_label: str
    scheduled_for: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    error_code: str
    error: str
    task_id: str
    worker: str
    dispatch_count: int
    idempotency_key: str
    lease_expired: bool


def booking_timeline(booking: Booking, now: datetime | None = None) -> list[TimelineEntry]:
    """Every attempt of every step and compensation of the booking's saga, oldest first."""
    now = now or timezone.now()
    rows = SagaStep.objects.filter(saga_id=_saga_of(booking)).order_by("id")
    return [
        TimelineEntry(
            id=row.pk,
            name=row.name,
            direction=row.direction,
            round=row.round,
            attempt=row.attempt,
            status=row.status,
            status_label=row.get_status_display(),
            scheduled_for=row.scheduled_for,
            started_at=row.started_at,
            finished_at=row.finished_at,
            duration_ms=row.duration_ms,
            error_code=row.error_code,
            error=row.error,
            task_id=row.task_id,
            worker=row.worker,
            dispatch_count=row.dispatch_count,
            idempotency_key=row.idempotency_key,
            lease_expired=row.status == SagaStep.Status.SCHEDULED and row.lease_expires_at < now,
        )
        for row in rows
    ]


def booking_events(booking: Booking) -> list[SagaEvent]:
    """The saga's audit trail: cancels, operator actions (who, when, why), parks, re-sends."""
    return list(SagaEvent.objects.filter(saga_id=_saga_of(booking)).order_by("id"))


def booking_admin_log(booking: Booking) -> QuerySet[LogEntry]:
    """Django admin's log entries for the booking (operator actions taken in the console)."""
    return LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Booking), object_id=str(booking.pk)
    ).select_related("user")


# --- what a compensation would undo ------------------------------------------------------------


def compensation_plan(booking: Booking) -> list[dict[str, str]]:
    """The compensations that would run if the booking were compensated now, in the order they
    would run, with the idempotency key each would send and the provider reference it undoes."""
    saga = Saga.objects.get(pk=_saga_of(booking))
    results = saga.results or {}
    plan = []
    for step in engine.pending_compensations(saga):
        ref_field = step.meta.get("reference", "")  # where its reference lands in the results
        plan.append(
            {
                "step": step.name,
                # The engine keys attempts "<saga>:<step>:<direction>" (sagas.engine._schedule).
                "idempotency_key": f"{saga.pk}:{step.name}:{SagaStep.Direction.COMPENSATION}",
                "reference_field": ref_field,
                "reference": str(results.get(step.name, {}).get(ref_field, "")),
            }
        )
    return plan


# --- dashboard -------------------------------------------------------------------------------


def state_counts() -> dict[str, int]:
    """Bookings per state, every state present (zero when none), in the FSM's order."""
    counts = dict(Booking.objects.order_by().values_list("state").annotate(n=Count("pk")))
    return {state: counts.get(state, 0) for state in Booking.State.values}


def oldest_stuck(limit: int = 10, now: datetime | None = None) -> list[Booking]:
    return list(booking_list(now).filter(stuck_condition(now)).order_by("state_changed_at")[:limit])


def needing_attention(limit: int = 20) -> list[Booking]:
    return list(
        booking_list()
        .filter(state=Booking.State.REQUIRES_ATTENTION)
        .order_by("state_changed_at")[:limit]
    )


def recent_failures(since: timedelta = timedelta(hours=24), limit: int = 15) -> list[dict]:
    """Failed attempts in the window grouped by step, direction and error code: how many, when
    last, and one example message."""
    cutoff = timezone.now() - since
    rows = (
        SagaStep.objects.filter(status__in=FAILED_STATUSES, finished_at__gte=cutoff)
        .order_by()
        .values("name", "direction", "error_code")
        .annotate(count=Count("id"), last_seen=Max("finished_at"), example=Max("error"))
        .order_by("-count", "-last_seen")[:limit]
    )
    return [dict(row) for row in rows]


# --- why is it stuck (on-call) ---------------------------------------------------------------


@dataclass(frozen=True)
class StuckSaga:
    """A saga that is not moving on by itself, with the reason and what fixes it."""

    reference: str
    booking_state: str
    saga_id: str
    reason: str
    detail: str
    step: str
    direction: str
    attempt: int
    dispatch_count: int
    since: datetime
    fix: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "since": self.since.isoformat()}


REASONS = {
    "worker_lost": "worker lost or lease expired",
    "message_lost": "message lost",
    "compensation_failed": "compensation failed",
    "waiting_for_operator": "waiting for an operator",
}


def _provider_saw(row: SagaStep) -> bool:
    """Whether the provider recorded a call with this attempt's idempotency key: the worker
    got as far as the side effect. Looks at the providers' ledgers (the sandboxes keep one)."""
    key = row.idempotency_key
    if row.direction == SagaStep.Direction.ACTION:
        ledger = {
            "fraud_check": FraudScreeningRecord.objects.filter(idempotency_key=key),
            "preauthorize": PaymentAuthorization.objects.filter(idempotency_key=key),
            "confirm": InventoryReservation.objects.filter(idempotency_key=key),
            "send_email": EmailRecord.objects.filter(idempotency_key=key),
        }.get(row.name)
    else:
        ledger = {
            "preauthorize": PaymentAuthorization.objects.filter(void_key=key),
            "confirm": InventoryReservation.objects.filter(release_key=key),
            "send_email": EmailRecord.objects.filter(idempotency_key=key),
        }.get(row.name)
    return ledger is not None and ledger.exists()


def _explain(booking: Booking, row: SagaStep | None, last_failed: SagaStep | None, now) -> tuple:
    ref = booking.reference
    if booking.state == Booking.State.REQUIRES_ATTENTION:
        failed = last_failed
        what = f"{failed.name} ({failed.direction})" if failed else "a step"
        error = f": {failed.error}" if failed and failed.error else ""
        if failed and failed.direction == SagaStep.Direction.COMPENSATION:
            return (
                "compensation_failed",
                f"compensation of {failed.name} gave up after {failed.attempt} attempt(s){error}",
                f"when the provider is back: manage.py retry_booking {ref} --reason ...; "
                f"or undo it by hand, then: manage.py resolve_booking {ref} --outcome cancelled",
                failed,
            )
        return (
            "waiting_for_operator",
            f"{booking.attention_reason or what + ' gave up'}{error}",
            f"manage.py retry_booking {ref} --reason ...; or resolve_booking {ref} "
            "--outcome completed|cancelled; or compensate_booking",
            failed,
        )
    if row is None:
        return (
            "message_lost",
            "in flight but no attempt is scheduled: nothing will move it on",
            f"manage.py compensate_booking {ref} or resolve it after checking the providers",
            last_failed,
        )
    if _provider_saw(row) or row.dispatch_count > 1:
        return (
            "worker_lost",
            f"{row.name} ({row.direction}) attempt {row.attempt}: lease ran out "
            f"{int((now - row.lease_expires_at).total_seconds())}s ago with no outcome after "
            f"{row.dispatch_count} send(s); "
            + (
                "the provider saw the call, so its worker died mid-step"
                if _provider_saw(row)
                else "sent again and still no outcome"
            ),
            "manage.py sweep_sagas (sends it again; the idempotency key makes it a replay)",
            row,
        )
    return (
        "message_lost",
        f"{row.name} ({row.direction}) attempt {row.attempt}: lease ran out with no outcome and "
        "the provider never saw its key: the message never reached a worker",
        "manage.py sweep_sagas (sends it again)",
        row,
    )


def explain_stuck(now: datetime | None = None, limit: int = 200) -> list[StuckSaga]:
    """Every booking that is not moving on by itself, oldest first, with why and what fixes it:
    stuck (a lease that ran out: worker or message lost; or nothing scheduled) or parked for an
    operator. A booking waiting for a retry is moving on by itself and is not listed. Costs a
    few queries per booking listed (on-call use, bounded by `limit`)."""
    now = now or timezone.now()
    candidates = (
        Booking.objects.filter(stuck_condition(now) | Q(state=Booking.State.REQUIRES_ATTENTION))
        .order_by("state_changed_at")
        .select_related("saga")[:limit]
    )
    found = []
    for booking in candidates:
        steps = SagaStep.objects.filter(saga_id=_saga_of(booking))
        row = steps.filter(status=SagaStep.Status.SCHEDULED).first()
        last_failed = steps.filter(status__in=FAILED_STATUSES).order_by("-id").first()
        reason, detail, fix, subject = _explain(booking, row, last_failed, now)
        found.append(
            StuckSaga(
                reference=booking.reference,
                booking_state=booking.state,
                saga_id=str(booking.saga_id),
                reason=reason,
                detail=detail,
                step=subject.name if subject else "",
                direction=subject.direction if subject else "",
                attempt=subject.attempt if subject else 0,
                dispatch_count=subject.dispatch_count if subject else 0,
                since=booking.state_changed_at,
                fix=fix,
            )
        )
    return found


def retry_target(booking: Booking) -> str:
    """What an operator retry would run: the attempt scheduled now (sent again), or else the
    latest failed step (run again with a fresh budget); "" when there is neither."""
    row = (
        SagaStep.objects.filter(
            saga_id=_saga_of(booking),
            status__in=[SagaStep.Status.SCHEDULED, SagaStep.Status.FAILED],
        )
        .order_by("-id")
        .first()
    )
    return f"{row.name} ({row.direction})" if row else ""
