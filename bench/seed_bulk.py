"""Bulk-create realistic bookings (with their sagas and attempt rows) to measure the operator
console on a large table (bench/admin_list.py; tests/admin). Never for a shared database: it
refuses any host but this machine. Called with Django set up."""

from __future__ import annotations

import random
import time
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bookings.models import Booking, Resource
from sagas.models import Saga, SagaStep, time_ordered_id

STEPS = ("fraud_check", "preauthorize", "confirm", "send_email")
IN_FLIGHT_STEP = {
    "fraud_check": "fraud_check",
    "preauthorizing": "preauthorize",
    "confirming": "confirm",
    "notifying": "send_email",
}
# Share of each state, roughly what a busy day looks like.
MIX = (
    ("completed", 60),
    ("cancelled", 15),
    ("requires_attention", 5),
    ("fraud_check", 5),
    ("preauthorizing", 5),
    ("confirming", 5),
    ("notifying", 5),
)
BULK_EMAIL_DOMAIN = "bulk.example"


def _local_database() -> bool:
    db = settings.DATABASES["default"]
    return db["ENGINE"].endswith("sqlite3") or (db.get("HOST") or "") in (
        "",
        "127.0.0.1",
        "localhost",
        "::1",
    )


def seed_bulk_bookings(count: int = 1000, *, batch: int = 2000, seed: int = 1) -> dict:
    """Create `count` fake bookings (guest e-mails @bulk.example) with sagas and attempt rows in
    a realistic mix of states (some stuck, some requiring attention); return how many and how
    long it took. Local databases only."""
    if not _local_database():
        raise RuntimeError("seed_bulk_bookings only runs against a local database.")
    rng = random.Random(seed)  # repeatable mixes for repeatable measurements
    started = time.monotonic()
    resource, _ = Resource.objects.get_or_create(
        code="bulk-room",
        defaults={"name": "Bulk room", "capacity": 1000, "nightly_price": Decimal("100.00")},
    )
    created = 0
    while created < count:
        n = min(batch, count - created)
        _batch(n, resource, rng, offset=created)
        created += n
    return {"created": created, "seconds": round(time.monotonic() - started, 1)}


@transaction.atomic
def _batch(n: int, resource: Resource, rng: random.Random, offset: int) -> None:
    now = timezone.now()
    states = [s for s, weight in MIX for _ in range(weight)]
    sagas, bookings, steps = [], [], []
    for i in range(n):
        state = rng.choice(states)
        created_at = now - timedelta(minutes=rng.randint(1, 60 * 24 * 30))
        saga = Saga(id=time_ordered_id(), saga_type="booking", target_id="")
        booking = Booking(
            id=time_ordered_id(),
            resource=resource,
            check_in=date.today() + timedelta(days=rng.randint(1, 300)),
            check_out=date.today() + timedelta(days=301 + rng.randint(1, 5)),
            guest_name=f"Bulk guest {offset + i}",
            guest_email=f"guest{offset + i}@{BULK_EMAIL_DOMAIN}",
            payment_token="tok_visa",
            amount=Decimal("200.00"),
            currency="EUR",
            state=state,
            state_changed_at=created_at + timedelta(seconds=rng.randint(1, 600)),
            saga_id=saga.id,
        )
        saga.target_id = str(booking.id)
        sagas.append(saga)
        bookings.append(booking)
        steps.extend(_steps(saga, booking, rng, now))
    Saga.objects.bulk_create(sagas)
    Booking.objects.bulk_create(bookings)
    SagaStep.objects.bulk_create(steps)
    # auto_now_add ignores the value given: spread creation times as on a real table.
    for booking in bookings:
        booking.created_at = booking.state_changed_at - timedelta(seconds=30)
    Booking.objects.bulk_update(bookings, ["created_at"])


def _steps(saga: Saga, booking: Booking, rng: random.Random, now) -> list[SagaStep]:
    state = booking.state
    when = booking.state_changed_at

    def row(name: str, status: str, direction: str = "action", **extra) -> SagaStep:
        return SagaStep(
            saga=saga,
            name=name,
            index=STEPS.index(name),
            direction=direction,
            attempt=extra.pop("attempt", 1),
            status=status,
            idempotency_key=f"{saga.id}:{name}:{direction}",
            scheduled_for=extra.pop("scheduled_for", when),
            lease_expires_at=extra.pop("lease_expires_at", when + timedelta(seconds=40)),
            started_at=when if status != "scheduled" else None,
            finished_at=when + timedelta(milliseconds=80) if status != "scheduled" else None,
            **extra,
        )

    if state == "completed":
        booking.payment_status, booking.room_status = "authorized", "reserved"
        booking.authorization_ref = f"AUTH-{saga.id.hex[:12]}"
        booking.reservation_ref = f"RES-{saga.id.hex[:12]}"
        saga.status = "completed"
        return [row(name, "succeeded") for name in STEPS]
    if state == "cancelled":
        booking.cancellation_reason, booking.payment_status = "unavailable", "voided"
        saga.status, saga.direction = "compensated", "backward"
        return [
            row("fraud_check", "succeeded"),
            row("preauthorize", "succeeded"),
            row("confirm", "failed", error="no room available", error_code="unavailable"),
            row("preauthorize", "succeeded", direction="compensation"),
        ]
    if state == "requires_attention":
        booking.cancellation_reason = "unavailable"
        booking.attention_reason = "compensation of preauthorize failed"
        saga.status, saga.direction = "requires_attention", "backward"
        return [
            row("fraud_check", "succeeded"),
            row("preauthorize", "succeeded"),
            row("confirm", "failed", error="no room available", error_code="unavailable"),
            row(
                "preauthorize",
                "failed",
                direction="compensation",
                attempt=3,
                error="void failed",
                error_code="gateway",
            ),
        ]
    # In flight: the steps before succeeded, the current one is scheduled; one in five has
    # a lease that ran out (stuck), as after a lost worker.
    current = IN_FLIGHT_STEP[state]
    done = [row(name, "succeeded") for name in STEPS[: STEPS.index(current)]]
    stuck = rng.random() < 0.2
    lease = now - timedelta(minutes=5) if stuck else now + timedelta(minutes=5)
    saga.current_step = current
    return [*done, row(current, "scheduled", lease_expires_at=lease, scheduled_for=now)]
