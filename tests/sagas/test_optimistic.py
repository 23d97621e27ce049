"""The one-statement record of a successful action (sagas/optimistic.py): it writes everything or
nothing, and any change made meanwhile by someone else (a cancel, a second copy of the attempt,
a write of the booking) sends the outcome through the locked path instead of being overwritten.

These tests run outside a test transaction (the path is only taken in autocommit, as in a
worker), on PostgreSQL (it needs data-modifying CTEs)."""

import logging
import threading
import uuid

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bookings.models import Booking
from bookings.saga import BOOKING_SAGA
from bookings.services import booking_cancel
from sagas import engine
from sagas.models import Saga, SagaStep, time_ordered_id
from tests.faults.injection import messages_lost

from ..conftest import postgres_only
from ..helpers import assert_invariants, book, reload, scheduled, stay

pytestmark = [postgres_only, pytest.mark.django_db(transaction=True)]


def chain_queues() -> frozenset[str]:
    """Every queue of the booking saga's steps: a worker serving them runs a saga through."""
    return frozenset(s.queue or settings.CELERY_TASK_DEFAULT_QUEUE for s in BOOKING_SAGA.steps)


def booked(resource) -> Booking:
    with messages_lost():
        return book(resource)


def stale_copy(booking: Booking) -> SagaStep:
    """The scheduled attempt with its saga, as a worker reads it before calling the provider."""
    return SagaStep.objects.select_related("saga").get(
        saga_id=booking.saga_id, status=SagaStep.Status.SCHEDULED
    )


def locks_saga_or_booking(sql: str) -> bool:
    return "FOR UPDATE" in sql and ('FROM "sagas_saga"' in sql or 'FROM "bookings_booking"' in sql)


def success(result: dict | None = None) -> engine.Outcome:
    now = timezone.now()
    return engine.Outcome(
        result or {"decision": "approved", "screening_ref": "fr_x"}, None, now, now
    )


def record(row: SagaStep, outcome: engine.Outcome) -> str:
    return engine.record(row.pk, row.saga_id, outcome, row=row)


def test_a_happy_saga_takes_one_statement_per_step_and_no_lock(resource):
    booking = booked(resource)
    first = scheduled(booking.saga_id)
    with CaptureQueriesContext(connection) as q:
        assert engine.execute(first.pk, chain_queues=chain_queues()) == "succeeded"
    sql = [x["sql"] for x in q.captured_queries]
    booking = reload(booking)
    assert booking.state == "completed" and booking.saga.status == "completed"
    assert booking.saga.version == 5  # started, then one write per step
    # The last step's success writes the booking.completed event (bookings/events.py), which
    # commits with the transition: that one outcome takes the locked path (saga, then booking).
    assert [s.split(" AS (")[0] for s in sql if s.startswith("WITH")] == ["WITH saga"] * 3
    assert [locks_saga_or_booking(s) for s in sql].count(True) == 2
    # The booking was read with the first attempt (one query), then carried along the chain; the
    # locked path reads its row again (the payment step reads only its token, apart).
    assert sum(s.startswith('SELECT "bookings_booking"."id"') for s in sql) == 1
    # The attempts: read once with the first; the last one again under lock, and as the event's
    # timeline.
    assert sum('FROM "sagas_sagastep"' in s and s.startswith("SELECT") for s in sql) == 3
    assert list(
        SagaStep.objects.filter(saga_id=booking.saga_id).values_list("name", "status", "attempt")
    ) == [
        ("fraud_check", "succeeded", 1),
        ("preauthorize", "succeeded", 1),
        ("confirm", "succeeded", 1),
        ("send_email", "succeeded", 1),
    ]
    assert booking.saga.results["preauthorize"]["authorization_ref"] == booking.authorization_ref
    assert_invariants()


def test_switched_off_every_outcome_takes_the_locked_path(resource, settings):
    settings.SAGA_ONE_STATEMENT_RECORD = False
    booking = booked(resource)
    with CaptureQueriesContext(connection) as q:
        engine.execute(scheduled(booking.saga_id).pk, chain_queues=chain_queues())
    assert reload(booking).state == "completed"
    assert not any(x["sql"].startswith("WITH") for x in q.captured_queries)
    assert sum(locks_saga_or_booking(x["sql"]) for x in q.captured_queries) == 8  # 2 per step


def test_a_cancel_that_lands_between_read_and_write_is_honoured(resource):
    booking = booked(resource)
    row = stale_copy(booking)  # the worker read the attempt, then called the provider...
    with messages_lost():
        assert booking_cancel(booking=booking, actor="guest") == "requested"  # ...meanwhile
        assert record(row, success()) == "succeeded"
    booking = reload(booking)
    # The fraud check succeeded and is kept; nothing after it runs; the booking is cancelled
    # (a fraud check has nothing to undo).
    assert booking.state == "cancelled" and booking.cancellation_reason == "customer_cancelled"
    assert booking.saga.results["fraud_check"]["screening_ref"] == "fr_x"
    assert not SagaStep.objects.filter(saga_id=booking.saga_id, name="preauthorize").exists()
    assert_invariants()


def test_a_second_copy_of_the_attempt_changes_nothing(resource):
    booking = booked(resource)
    first, second = stale_copy(booking), stale_copy(booking)
    with messages_lost():
        assert record(first, success()) == "succeeded"
        version = Saga.objects.get(pk=booking.saga_id).version
        assert record(second, success({"decision": "approved", "screening_ref": "other"})) == (
            "duplicate"
        )
    booking = reload(booking)
    assert booking.saga.version == version
    assert booking.saga.results["fraud_check"]["screening_ref"] == "fr_x"
    assert SagaStep.objects.filter(saga_id=booking.saga_id, name="preauthorize").count() == 1
    assert booking.state == "preauthorizing"


def test_the_statement_writes_all_or_nothing(resource):
    booking = booked(resource)
    row = stale_copy(booking)
    saga_before = Saga.objects.get(pk=booking.saga_id)
    # The attempt stops being scheduled behind the engine's back, the saga's version unchanged:
    # the saga part of the statement would succeed, the attempt part cannot.
    SagaStep.objects.filter(pk=row.pk).update(status=SagaStep.Status.SKIPPED)
    with messages_lost():
        assert record(row, success()) == "duplicate"
    saga = Saga.objects.get(pk=booking.saga_id)
    assert (saga.version, saga.results, saga.current_step) == (
        saga_before.version,
        {},
        "fraud_check",
    )
    booking = reload(booking)
    assert booking.state == "fraud_check" and booking.fraud_decision == ""
    assert SagaStep.objects.filter(saga_id=booking.saga_id).count() == 1


def test_a_booking_written_meanwhile_is_not_overwritten(resource, caplog):
    booking = booked(resource)
    row = stale_copy(booking)
    target = BOOKING_SAGA.hooks.load_target(row.saga)  # as a worker's chain holds it
    Booking.objects.filter(pk=booking.pk).update(
        guest_name="Changed Meanwhile", updated_at=timezone.now()
    )
    with caplog.at_level(logging.INFO, logger="sagas.engine"), messages_lost():
        label = engine.record(row.pk, row.saga_id, success(), row=row, target=target)
    assert label == "succeeded"
    assert "changed meanwhile" in caplog.text
    booking = reload(booking)
    assert booking.guest_name == "Changed Meanwhile"  # kept: the locked path read it again
    assert booking.state == "preauthorizing" and booking.fraud_decision == "approved"
    assert booking.saga.version == 2


def test_racing_copies_of_one_attempt_have_one_winner(resource):
    booking = booked(resource)
    copies = [stale_copy(booking) for _ in range(6)]
    labels: list[str] = []
    barrier = threading.Barrier(len(copies))

    def racer(row: SagaStep) -> None:
        barrier.wait()
        try:
            labels.append(record(row, success()))
        finally:
            connection.close()

    with messages_lost():
        threads = [threading.Thread(target=racer, args=(row,)) for row in copies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(labels) == ["duplicate"] * 5 + ["succeeded"]
    booking = reload(booking)
    assert booking.saga.version == 2 and booking.state == "preauthorizing"
    assert SagaStep.objects.filter(saga_id=booking.saga_id, name="preauthorize").count() == 1


@override_settings(SAGA_ONE_STATEMENT_RECORD=True)
def test_inside_a_transaction_the_locked_path_is_taken(resource):
    from django.db import transaction

    booking = booked(resource)
    row = stale_copy(booking)
    with transaction.atomic(), messages_lost(), CaptureQueriesContext(connection) as q:
        assert record(row, success()) == "succeeded"
    assert any(locks_saga_or_booking(x["sql"]) for x in q.captured_queries)
    assert reload(booking).state == "preauthorizing"


# --- the saga's start: saga, booking and first attempt in one statement ----------------------


def _columns(obj, skip: set[str]) -> dict:
    return {
        f.attname: getattr(obj, f.attname)
        for f in obj._meta.concrete_fields
        if f.attname not in skip
    }


def sent(caplog) -> list[int]:
    """The attempts whose message messages_lost() dropped, that is, sent."""
    return [r.args[0] for r in caplog.records if r.getMessage().endswith(" dropped")]


def start_new_booking(resource) -> Booking:
    """engine.start of a new booking as booking_create calls it, without the booking.created
    event that booking_create writes with it (in a transaction, so never in one statement)."""
    check_in, check_out = stay(10, 2)
    booking = Booking(
        resource=resource,
        check_in=check_in,
        check_out=check_out,
        guest_name="Grace Hopper",
        guest_email="one@example.com",
        payment_token="tok_visa",
        amount=resource.nightly_price * 2,
        currency=resource.currency,
        saga_id=time_ordered_id(),
    )
    payload = {"reference": booking.reference, "resource": resource.code,
               "check_in": check_in.isoformat(), "check_out": check_out.isoformat(),
               "guest_name": booking.guest_name, "guest_email": booking.guest_email,
               "payment_token": "tok_visa", "amount": str(booking.amount),
               "currency": resource.currency}  # fmt: skip
    engine.start(
        saga_type="booking",
        target_id=str(booking.pk),
        saga_id=booking.saga_id,
        target=booking,
        payload=payload,
    )
    return booking


def test_a_booking_starts_in_one_statement_with_the_same_rows_as_the_transaction(resource, caplog):
    caplog.set_level(logging.WARNING, logger="sagas.engine")
    with CaptureQueriesContext(connection) as q, messages_lost():
        fast = start_new_booking(resource)
    writes = [x["sql"] for x in q.captured_queries if not x["sql"].startswith("SELECT")]
    assert len(writes) == 1 and writes[0].startswith("WITH new0 AS (INSERT INTO")
    with messages_lost(), transaction.atomic():  # the other path: one INSERT per row
        slow = start_new_booking(resource)
    first_fast, first_slow = scheduled(fast.saga_id), scheduled(slow.saga_id)
    assert sent(caplog) == [first_fast.pk, first_slow.pk]  # each sent once, once written

    moments = {"created_at", "updated_at", "started_at", "state_changed_at", "scheduled_for",
               "lease_expires_at"}  # fmt: skip
    ids = {"id", "saga_id", "reference", "target_id", "idempotency_key", "payload"}
    assert _columns(reload(fast), moments | ids) == _columns(reload(slow), moments | ids)
    assert _columns(Saga.objects.get(pk=fast.saga_id), moments | ids) == _columns(
        Saga.objects.get(pk=slow.saga_id), moments | ids
    )
    assert _columns(first_fast, moments | ids) == _columns(first_slow, moments | ids)
    assert reload(fast).state == "fraud_check" and Saga.objects.get(pk=fast.saga_id).version == 1
    assert first_fast.idempotency_key == f"{fast.saga_id}:fraud_check:action"
    fast.guest_name = "Ada"  # the object returned is saved as far as Django and django-fsm know
    fast.save()
    assert reload(fast).guest_name == "Ada"


def test_a_start_that_cannot_insert_its_booking_writes_nothing_and_sends_nothing(resource, caplog):
    caplog.set_level(logging.WARNING, logger="sagas.engine")
    taken = booked(resource)
    caplog.clear()
    # A booking whose reference is taken: its INSERT fails, after the saga's in the statement.
    clash = Booking(
        resource=resource,
        check_in=taken.check_in,
        check_out=taken.check_out,
        guest_name="Ada",
        guest_email="ada@example.com",
        payment_token="tok_visa",
        amount=taken.amount,
        currency=taken.currency,
        reference=taken.reference,
        saga_id=uuid.uuid4(),
    )
    with pytest.raises(IntegrityError), messages_lost():
        engine.start(
            saga_type="booking",
            target_id=str(clash.pk),
            saga_id=clash.saga_id,
            target=clash,
            payload={"reference": clash.reference},
        )
    assert Saga.objects.count() == 1 and SagaStep.objects.count() == 1  # the first booking's
    assert Booking.objects.count() == 1 and sent(caplog) == []
