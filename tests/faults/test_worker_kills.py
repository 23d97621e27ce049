"""SIGKILL of a worker in the middle of each kind of step, action and compensation, with dozens
of sagas in flight; the worker restarted. Every saga must end, each effect once."""

from collections import Counter

import pytest

from bookings.models import Booking
from bookings.providers.models import EmailRecord, FraudScreeningRecord, InventoryReservation
from bookings.services import booking_cancel
from sandbox.models import PaymentAuthorization

from ..factories import ResourceFactory
from ..helpers import assert_invariants, book, settle_with_sweeper, wait_for, wait_settled

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SAGAS = 24

# For each kind of step: the ledger rows that show its effect happened.
EFFECTS = {
    "fraud_check.action": lambda: FraudScreeningRecord.objects.count(),
    "preauthorize.action": lambda: PaymentAuthorization.objects.filter(
        status__in=["authorized", "voided"]
    ).count(),
    "confirm.action": lambda: InventoryReservation.objects.count(),
    "send_email.action": lambda: EmailRecord.objects.filter(template="booking_confirmed").count(),
    "preauthorize.compensation": lambda: PaymentAuthorization.objects.filter(
        status="voided"
    ).count(),
    "confirm.compensation": lambda: InventoryReservation.objects.filter(status="released").count(),
    "send_email.compensation": lambda: EmailRecord.objects.filter(
        template="booking_cancelled"
    ).count(),
}


@pytest.mark.parametrize("kind", list(EFFECTS))
def test_worker_killed_mid_step_then_restarted_finishes_every_saga_once(start_worker, kind):
    room = ResourceFactory(code="garden-room", capacity=SAGAS)
    sold_out = ResourceFactory(code="sold-out", capacity=0)
    compensation = kind.endswith("compensation")
    by_customer = kind in ("confirm.compensation", "send_email.compensation")
    if by_customer:
        # Undo completed bookings: the compensations run after a customer cancel.
        warmup = start_worker("warmup", concurrency=2)
        bookings = [book(room, email=f"g{i}@example.com") for i in range(SAGAS)]
        wait_settled(bookings, timeout=120)
        warmup.stop()
    # Every attempt of this kind pauses between its provider call and its commit: a kill
    # then lands inside the step for every saga running it.
    doomed = start_worker("doomed", concurrency=2, faults={"pause_after_action": {kind: 0.4}})
    if by_customer:
        for b in bookings:
            booking_cancel(booking=b, actor="customer")
    else:
        target = sold_out if compensation else room
        bookings = [book(target, email=f"g{i}@example.com") for i in range(SAGAS)]
    before = EFFECTS[kind]()
    wait_for(lambda: EFFECTS[kind]() >= before + 3, timeout=90, what=f"some {kind} effects")
    doomed.kill()
    in_flight = Booking.objects.exclude(state__in=Booking.TERMINAL).count()
    assert in_flight > 0, "the kill landed after every saga had finished: nothing was tested"
    start_worker("restarted", concurrency=2)
    settled = settle_with_sweeper(bookings, timeout=180)

    states = Counter(b.state for b in settled)
    if compensation:
        assert states == {"cancelled": SAGAS}, states
    else:
        assert states == {"completed": SAGAS}, states
    assert_invariants(bookings)
