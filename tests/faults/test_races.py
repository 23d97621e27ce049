"""Races and misbehaving deliveries against real workers: a copy of a step started while the
first still runs, a cancel racing a step about to succeed, every message delivered two to five
times at once, voids that fail for a while or for ever, and a poison message."""

from collections import Counter

import pytest
from django.test import override_settings

from bookings.models import Booking
from bookings.providers.models import EmailRecord, PaymentAuthorization
from bookings.services import booking_cancel
from sagas import engine, recovery
from sagas.models import SagaStep
from tests.faults.injection import messages_lost

from ..factories import ResourceFactory
from ..helpers import (
    assert_invariants,
    book,
    reload,
    settle_with_sweeper,
    wait_for,
    wait_settled,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_second_copy_started_while_the_first_still_runs_changes_nothing(start_worker):
    # The first copy outlives its lease (5 s step timeout + 5 s grace in tests) before it
    # records its outcome; the sweeper sends a second copy, which runs alongside it with the
    # same idempotency key.
    start_worker("slow", concurrency=2, faults={"pause_after_action": {"preauthorize.action": 14}})
    booking = book(ResourceFactory(code="garden-room"))
    wait_for(
        lambda: PaymentAuthorization.objects.filter(status="authorized").exists(),
        timeout=30,
        what="the first authorization",
    )
    [booking] = settle_with_sweeper([booking], timeout=60)
    assert booking.state == "completed"
    assert PaymentAuthorization.objects.count() == 1
    row = SagaStep.objects.get(saga_id=booking.saga_id, name="preauthorize")
    assert row.status == "succeeded" and row.dispatch_count >= 2
    assert_invariants([booking])


def test_a_cancel_racing_a_step_about_to_succeed_undoes_it(start_worker):
    start_worker("w", faults={"pause_after_action": {"confirm.action": 2}})
    booking = book(ResourceFactory(code="garden-room"))
    wait_for(lambda: reload(booking).state == "confirming", timeout=30, what="confirming")
    booking_cancel(booking=booking, actor="customer")  # while the room is being reserved
    [booking] = wait_settled([booking], timeout=60)
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "customer_cancelled")
    assert booking.room_status == "released" and booking.payment_status == "voided"
    assert not EmailRecord.objects.exists()  # the confirmation e-mail never went out
    assert_invariants([booking])


@pytest.mark.parametrize("copies", [2, 5])
def test_each_message_delivered_several_times_at_once_has_its_effect_once(start_worker, copies):
    faults = {"duplicate_messages": copies}
    start_worker("dup", concurrency=3, faults=faults)
    room = ResourceFactory(code="garden-room", capacity=10)
    with override_settings(SAGA_FAULTS=faults):
        bookings = [book(room, email=f"g{i}@example.com") for i in range(6)]
        bookings.append(book(ResourceFactory(code="sold-out", capacity=0), token="tok_flaky"))
    settled = wait_settled(bookings, timeout=120)
    assert Counter(b.state for b in settled) == {"completed": 6, "cancelled": 1}
    assert PaymentAuthorization.objects.filter(status="authorized").count() == 6
    assert EmailRecord.objects.filter(status="sent").count() == 6
    for b in settled:
        names = list(
            SagaStep.objects.filter(saga_id=b.saga_id, status="succeeded").values_list(
                "name", "direction"
            )
        )
        assert len(names) == len(set(names)), f"{b} recorded a step twice: {names}"
    assert_invariants(bookings)


def test_a_void_that_fails_twice_then_succeeds_ends_cancelled(start_worker):
    start_worker("w")
    booking = book(ResourceFactory(code="sold-out", capacity=0), token="tok_void_flaky")
    [booking] = wait_settled([booking], timeout=60)
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "unavailable")
    assert PaymentAuthorization.objects.get().void_attempts == 3
    voids = SagaStep.objects.filter(saga_id=booking.saga_id, direction="compensation")
    assert list(voids.order_by("id").values_list("status", flat=True)) == [
        "retrying",
        "retrying",
        "succeeded",
    ]
    assert_invariants([booking])


def test_a_void_that_never_succeeds_parks_the_booking_with_the_hold_on_record(start_worker):
    start_worker("w")
    booking = book(ResourceFactory(code="sold-out", capacity=0), token="tok_void_fails")
    [booking] = wait_settled([booking], timeout=60)
    assert booking.state == "requires_attention"
    assert booking.payment_status == "authorized"  # what the operator must release
    assert PaymentAuthorization.objects.get().status == "authorized"
    assert_invariants([booking])


@override_settings(SAGA_MAX_DISPATCHES=3)
def test_a_poison_message_is_bounded_parks_its_saga_and_the_queue_keeps_moving(start_worker):
    room = ResourceFactory(code="garden-room", capacity=10)
    with messages_lost():
        poison = book(room, email="poison@example.com")
    # Every delivery of this booking's fraud check kills the pool process running it.
    start_worker(
        "poisoned",
        concurrency=2,
        faults={"crash_before_action": [f"{poison.saga_id}:fraud_check:action"]},
    )
    engine.retry(saga_id=poison.saga_id, actor="test", reason="send the poison now")
    others = [book(room, email=f"g{i}@example.com") for i in range(4)]

    def parked() -> bool:
        recovery.sweep()  # as Celery beat does, with real leases (10 s in tests)
        return reload(poison).state == "requires_attention"

    wait_for(parked, timeout=240, what="the poison saga to park")
    row = SagaStep.objects.get(saga_id=poison.saga_id, name="fraud_check")
    assert (row.status, row.error_code, row.dispatch_count) == ("failed", "no_outcome", 3), row
    assert Booking.objects.get(pk=poison.pk).attention_reason.startswith("fraud_check")
    settled = wait_settled(others, timeout=120)
    assert [b.state for b in settled] == ["completed"] * 4
