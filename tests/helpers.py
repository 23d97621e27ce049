"""Helpers shared by the suites: drive a saga synchronously (unit tests), wait for a state
(integration tests), create bookings, and check the invariants every scenario must keep."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import connection

from bookings.models import Booking, Resource
from bookings.providers.models import (
    EmailRecord,
    FraudScreeningRecord,
    InventoryReservation,
    PaymentAuthorization,
)
from bookings.saga import STEP_NAMES
from bookings.services import booking_create
from sagas import engine
from sagas.models import Saga, SagaStep

from .factories import stay


def book(
    resource: Resource,
    *,
    token: str = "tok_visa",
    email: str = "guest@example.com",
    days_ahead: int = 10,
    nights: int = 2,
    owner: Any = None,
) -> Booking:
    check_in, check_out = stay(days_ahead, nights)
    return booking_create(
        resource_code=resource.code,
        check_in=check_in,
        check_out=check_out,
        guest_name="Grace Hopper",
        guest_email=email,
        payment_token=token,
        owner=owner,
    )


def scheduled(saga_id: Any) -> SagaStep | None:
    return SagaStep.objects.filter(saga_id=saga_id, status=SagaStep.Status.SCHEDULED).first()


def drive(saga_id: Any, *, max_steps: int = 100) -> list[str]:
    """Run a saga's scheduled attempts one after another in this process, ignoring their
    countdowns, until none is left. Returns the labels execute() gave."""
    labels = []
    for _ in range(max_steps):
        row = scheduled(saga_id)
        if row is None:
            return labels
        labels.append(f"{row.name}/{row.direction}#{row.attempt}:{engine.execute(row.pk)}")
    raise AssertionError(f"saga {saga_id} still running after {max_steps} steps: {labels}")


def reload(booking: Booking) -> Booking:
    return Booking.objects.select_related("saga").get(pk=booking.pk)


def wait_for(predicate: Callable[[], bool], *, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def wait_settled(bookings: list[Booking], *, timeout: float = 90) -> list[Booking]:
    """Wait until every booking is completed, cancelled or requires attention."""
    ids = [b.pk for b in bookings]

    def settled() -> bool:
        connection.close_if_unusable_or_obsolete()
        return not Booking.objects.filter(pk__in=ids).exclude(state__in=Booking.TERMINAL).exists()

    try:
        wait_for(settled, timeout=timeout, what="bookings to settle")
    except AssertionError:
        states = Counter(Booking.objects.filter(pk__in=ids).values_list("state", flat=True))
        raise AssertionError(f"bookings did not settle in {timeout}s: {dict(states)}") from None
    return list(Booking.objects.filter(pk__in=ids).order_by("created_at"))


def settle_with_sweeper(bookings: list[Booking], *, timeout: float = 90) -> list[Booking]:
    """Wait for the bookings to settle while sweeping as Celery beat does (with the real
    leases: 10 s in tests): whichever comes first, the broker's redelivery or the sweeper's
    re-send, recovers a lost step."""
    from sagas import recovery

    ids = [b.pk for b in bookings]
    last_sweep = 0.0

    def settled() -> bool:
        nonlocal last_sweep
        if time.monotonic() - last_sweep > 1:
            recovery.sweep()
            last_sweep = time.monotonic()
        return not Booking.objects.filter(pk__in=ids).exclude(state__in=Booking.TERMINAL).exists()

    wait_for(settled, timeout=timeout, what="bookings to settle with the sweeper's help")
    return list(Booking.objects.filter(pk__in=ids).order_by("created_at"))


def assert_invariants(bookings: list[Booking] | None = None) -> None:
    """What must hold after any scenario: a booking's state agrees with its saga and with the
    providers' ledgers; no live authorization for a cancelled booking; one authorization per
    booking at most; no resource over capacity on any night; every attempt has an outcome."""
    qs = Booking.objects.select_related("saga", "resource")
    if bookings is not None:
        qs = qs.filter(pk__in=[b.pk for b in bookings])
    saga_state = {
        Booking.State.COMPLETED: Saga.Status.COMPLETED,
        Booking.State.CANCELLED: Saga.Status.COMPENSATED,
        Booking.State.REQUIRES_ATTENTION: Saga.Status.REQUIRES_ATTENTION,
    }
    for booking in qs:
        assert booking.state in Booking.TERMINAL, f"{booking} is stuck"
        assert booking.saga.status == saga_state[booking.state], (booking, booking.saga)
        auths = list(
            PaymentAuthorization.objects.filter(idempotency_key__startswith=str(booking.saga_id))
        )
        assert len(auths) <= 1, f"{booking} has {len(auths)} authorizations"
        live = [a for a in auths if a.status == PaymentAuthorization.Status.AUTHORIZED]
        if booking.state == Booking.State.CANCELLED:
            assert not live, f"{booking} is cancelled but its authorization is live"
            assert not InventoryReservation.objects.filter(
                idempotency_key__startswith=str(booking.saga_id),
                status=InventoryReservation.Status.RESERVED,
            ).exists(), f"{booking} is cancelled but still holds its room"
        if booking.state == Booking.State.COMPLETED:
            assert len(live) == 1 and booking.payment_status == "authorized", booking
            assert booking.room_status == "reserved", booking
        assert not SagaStep.objects.filter(
            saga_id=booking.saga_id, status=SagaStep.Status.SCHEDULED
        ).exists(), f"{booking} has an attempt without outcome"
        assert_history_agrees(booking)
    assert_no_overbooking()


def assert_history_agrees(booking: Booking) -> None:
    """The saga's recorded attempts explain the booking's state, and every effect a provider's
    ledger holds was recorded by an attempt (no lost records)."""
    steps = SagaStep.objects.filter(saga_id=booking.saga_id)
    done = set(steps.filter(status="succeeded").values_list("name", "direction"))
    recorded_keys = set(steps.exclude(status="scheduled").values_list("idempotency_key", flat=True))
    if booking.state == Booking.State.COMPLETED:
        assert {(n, "action") for n in STEP_NAMES} <= done, (booking, done)
    if booking.state == Booking.State.CANCELLED:
        for name in ("preauthorize", "confirm"):
            if (name, "action") in done:
                assert (name, "compensation") in done, f"{booking}: {name} not undone"
    prefix = str(booking.saga_id)
    ledgers = [
        PaymentAuthorization.objects.filter(idempotency_key__startswith=prefix),
        InventoryReservation.objects.filter(idempotency_key__startswith=prefix),
        EmailRecord.objects.filter(idempotency_key__startswith=prefix),
        FraudScreeningRecord.objects.filter(idempotency_key__startswith=prefix),
    ]
    for ledger in ledgers:
        for key in ledger.values_list("idempotency_key", flat=True):
            assert key in recorded_keys, f"{booking}: effect {key} has no recorded attempt"


def assert_no_overbooking() -> None:
    per_night: Counter[tuple[int, Any]] = Counter()
    for r in InventoryReservation.objects.filter(status=InventoryReservation.Status.RESERVED):
        for n in range((r.check_out - r.check_in).days):
            per_night[(r.resource_id, r.check_in + timedelta(days=n))] += 1
    capacity = dict(Resource.objects.values_list("id", "capacity"))
    over = {k: v for k, v in per_night.items() if v > capacity[k[0]]}
    assert not over, f"overbooked nights: {over}"
