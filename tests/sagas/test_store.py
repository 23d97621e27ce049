"""The stores' contract (sagas/store.py), run against both: the ORM store (the reference, every
database) and the PostgreSQL one-statement store. A store writes a decision all or nothing, and
any change made meanwhile by someone else (a cancel, a second copy of the attempt, a write of the
booking) makes it write nothing, so that the engine reads again and decides again: nothing is
overwritten, and no lock is taken while a decision is made.

These tests run outside a test transaction, as a worker does."""

import json
import logging
import threading
import uuid

import pytest
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bookings.api.serializers import BookingSerializer
from bookings.api.views import represented_bookings
from bookings.models import Booking
from bookings.saga import BOOKING_SAGA
from bookings.services import booking_cancel, booking_create
from sagas import engine
from sagas import store as stores
from sagas.errors import TransientError
from sagas.models import Saga, SagaStep, time_ordered_id
from tests.faults.injection import messages_lost
from webhooks.models import Event

from ..conftest import postgres_only
from ..helpers import assert_invariants, book, reload, scheduled, stay

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["orm", "postgres"], autouse=True)
def store(request, settings) -> str:
    """Every test runs with each store (the PostgreSQL one where the database is PostgreSQL)."""
    if request.param == "postgres" and connection.vendor != "postgresql":
        pytest.skip("the one-statement store needs PostgreSQL")
    settings.SAGA_ONE_STATEMENT_RECORD = request.param == "postgres"
    return request.param


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


def test_a_happy_saga_takes_one_write_per_step_and_no_lock(resource, store):
    booking = booked(resource)
    first = scheduled(booking.saga_id)
    with CaptureQueriesContext(connection) as q:
        assert engine.execute(first.pk, chain_queues=chain_queues()) == "succeeded"
    sql = [x["sql"] for x in q.captured_queries]
    booking = reload(booking)
    assert booking.state == "completed" and booking.saga.status == "completed"
    assert booking.saga.version == 4  # one write per step
    assert not any(locks_saga_or_booking(s) for s in sql)
    if store == "postgres":  # each step's outcome, next attempt and events: one statement
        assert [s.split(" AS (")[0] for s in sql if s.startswith("WITH")] == ["WITH saga"] * 4
        engine_tables = ('"sagas_', '"bookings_booking"', '"webhooks_')
        writes = [s for s in sql if s.startswith(("UPDATE", "INSERT", "DELETE"))]
        assert not [s for s in writes if s.split()[2].startswith(engine_tables)]
    else:
        assert not any(s.startswith("WITH") for s in sql)
    # The booking was read with the first attempt (one query), then carried along the chain.
    assert sum(s.startswith('SELECT "bookings_booking"."id"') for s in sql) == 0
    assert sum(' JOIN "bookings_booking"' in s for s in sql) == 1
    # The attempts: the first was the saga's only one; the others were written by the chain,
    # so the booking.completed event shows the timeline without reading it.
    assert sum(s.startswith("SELECT") and 'FROM "sagas_sagastep" WHERE' in s for s in sql) == 0
    completed = Event.objects.get(subject_id=str(booking.pk), type="booking.completed")
    shown = BookingSerializer(represented_bookings().get(pk=booking.pk)).data
    shown = json.loads(json.dumps(shown, cls=DjangoJSONEncoder))
    assert completed.data == shown  # what a GET shows now, to the microsecond of updated_at
    assert [step["name"] for step in completed.data["timeline"]] == [
        "fraud_check",
        "preauthorize",
        "confirm",
        "send_email",
    ]
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


def test_a_chain_from_a_retried_attempt_reads_the_saga_attempts_once(resource):
    """Only a saga's first attempt is known to be its only one: a chain that starts from a
    retry reads the attempts once, and the booking.completed event shows all of them."""
    booking = booked(resource)
    now = timezone.now()
    hiccup = engine.Outcome({}, TransientError("screening timed out", code="timeout"), now, now)
    with messages_lost():
        assert record(stale_copy(booking), hiccup) == "retrying"
    retry = scheduled(booking.saga_id)
    assert (retry.name, retry.attempt) == ("fraud_check", 2)
    with CaptureQueriesContext(connection) as q:
        assert engine.execute(retry.pk, chain_queues=chain_queues()) == "succeeded"
    sql = [x["sql"] for x in q.captured_queries]
    assert sum(s.startswith("SELECT") and 'FROM "sagas_sagastep" WHERE' in s for s in sql) == 1
    completed = Event.objects.get(subject_id=str(booking.pk), type="booking.completed")
    assert [(a["name"], a["attempt"], a["status"]) for a in completed.data["timeline"]] == [
        ("fraud_check", 1, "retrying"),
        ("fraud_check", 2, "succeeded"),
        ("preauthorize", 1, "succeeded"),
        ("confirm", 1, "succeeded"),
        ("send_email", 1, "succeeded"),
    ]
    assert_invariants()


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
    assert booking.saga.version == version == 1
    assert booking.saga.results["fraud_check"]["screening_ref"] == "fr_x"
    assert SagaStep.objects.filter(saga_id=booking.saga_id, name="preauthorize").count() == 1
    assert booking.state == "preauthorizing"


def test_a_change_is_written_all_or_nothing(resource):
    booking = booked(resource)
    row = stale_copy(booking)
    saga_before = Saga.objects.get(pk=booking.saga_id)
    # The attempt stops being scheduled behind the engine's back, the saga's version unchanged:
    # the saga's write would succeed, the attempt's cannot.
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
    assert booking.guest_name == "Changed Meanwhile"  # kept: the engine read it again
    assert booking.state == "preauthorizing" and booking.fraud_decision == "approved"
    assert booking.saga.version == 1


@postgres_only
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
    assert booking.saga.version == 1 and booking.state == "preauthorizing"
    assert SagaStep.objects.filter(saga_id=booking.saga_id, name="preauthorize").count() == 1


def test_inside_a_transaction_the_write_joins_it(resource):
    booking = booked(resource)
    row = stale_copy(booking)
    with messages_lost(), transaction.atomic():
        assert record(row, success()) == "succeeded"
        assert SagaStep.objects.filter(saga_id=booking.saga_id, name="preauthorize").exists()
        transaction.set_rollback(True)  # the caller's transaction rolls back: so does it
    assert reload(booking).state == "fraud_check"
    assert SagaStep.objects.filter(saga_id=booking.saga_id).count() == 1
    row = stale_copy(booking)
    with messages_lost(), transaction.atomic():
        assert record(row, success()) == "succeeded"
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
    """engine.start of a new booking as booking_create calls it."""
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


def test_a_booking_starts_in_one_write_with_the_same_rows_in_a_transaction(resource, caplog, store):
    caplog.set_level(logging.WARNING, logger="sagas.engine")
    with CaptureQueriesContext(connection) as q, messages_lost():
        fast = start_new_booking(resource)
    writes = [x["sql"] for x in q.captured_queries if not x["sql"].startswith("SELECT")]
    if store == "postgres":
        assert len(writes) == 1 and writes[0].startswith("WITH new0 AS (INSERT INTO")
    with messages_lost(), transaction.atomic():  # inside the caller's transaction
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
    assert reload(fast).state == "fraud_check" and Saga.objects.get(pk=fast.saga_id).version == 0
    assert first_fast.idempotency_key == f"{fast.saga_id}:fraud_check:action"
    # Its booking.created event was written with it, with the booking as the API shows it.
    event = Event.objects.get(subject_id=str(fast.pk))
    assert (event.type, event.sequence, event.data["state"]) == (
        "booking.created",
        1,
        "fraud_check",
    )
    assert [s["name"] for s in event.data["timeline"]] == ["fraud_check"]


@pytest.mark.parametrize(
    "name",
    ["NULL", '{"Ada", Lovelace}', "O'Brien \\ Müller\nSecond line", "  ", "Zoë 🏨 ,;{}"],
)
def test_what_a_start_writes_reads_back_exactly(resource, name):
    """Every value of the saga's first rows comes back as written, whatever characters the
    guest's name holds: the booking, its saga's payload, the booking.created event's copy of
    it, the amount and the moments to the microsecond."""
    check_in, check_out = stay(10, 2)
    with messages_lost():
        booking = booking_create(
            resource_code=resource.code,
            check_in=check_in,
            check_out=check_out,
            guest_name=f"x{name}x",  # kept as given inside; only the ends are stripped
            guest_email="one@example.com",
            payment_token="tok_visa",
        )
    stored = reload(booking)
    assert stored.guest_name == booking.guest_name == f"x{name}x"
    assert (stored.amount, stored.check_in, stored.created_at, stored.state_changed_at) == (
        booking.amount,
        booking.check_in,
        booking.created_at,
        booking.state_changed_at,
    )
    assert Saga.objects.get(pk=booking.saga_id).payload["guest_name"] == f"x{name}x"
    event = Event.objects.get(subject_id=str(booking.pk))
    assert event.data["guest_name"] == f"x{name}x"
    assert event.data["amount"] == str(booking.amount)


def test_an_attempt_is_read_with_its_saga_booking_and_resource_in_one_query(resource):
    """What a worker reads before it runs an attempt: the row, its saga, the booking and its
    resource, each with every value as stored (JSON decoded, moments aware), in one query;
    nothing more is read when the engine and the booking's representation walk them."""
    booking = booked(resource)
    attempt = scheduled(booking.saga_id)
    with CaptureQueriesContext(connection) as q:
        row = stores.current().read(attempt.pk)
        assert row is not None
        read = [row, row.saga, row.saga.booking, row.saga.booking.resource]
        assert row.saga.booking.saga is row.saga
        assert BOOKING_SAGA.hooks.load_target(row.saga) is row.saga.booking
    assert len(q.captured_queries) == 1, q.captured_queries
    stored = [
        SagaStep.objects.get(pk=attempt.pk),
        Saga.objects.get(pk=booking.saga_id),
        Booking.objects.get(pk=booking.pk),
        type(resource).objects.get(pk=resource.pk),
    ]
    for got, expected in zip(read, stored, strict=True):
        assert type(got) is type(expected) and _columns(got, set()) == _columns(expected, set())
        assert not got._state.adding and got._state.db == "default"
    assert isinstance(row.saga.payload, dict) and row.saga.created_at.tzinfo is not None
    assert stores.current().read(attempt.pk + 10**9) is None


def _graph(obj, seen=None) -> dict:
    """An object's values, state and relation caches, the cached objects' in turn."""
    seen = seen if seen is not None else set()
    if obj is None or id(obj) in seen:
        return {"same object as above": type(obj).__name__} if obj is not None else {}
    seen.add(id(obj))
    return {
        "type": type(obj),
        "values": _columns(obj, set()),
        "state": (obj._state.adding, obj._state.db),
        "cached": {
            name: _graph(related, seen) for name, related in obj._state.fields_cache.items()
        },
    }


@postgres_only
@pytest.mark.parametrize("booking_gone", [False, True])
def test_the_postgresql_read_gives_what_the_orm_read_gives(resource, booking_gone, store):
    """The accelerator's read against the reference's, on the same row: the same objects, the
    same values and state, the same relation caches on every side (a missing booking cached
    as missing on both)."""
    if store == "orm":
        pytest.skip("compares both stores itself: once is enough")
    booking = booked(resource)
    attempt = scheduled(booking.saga_id)
    if booking_gone:
        Booking.objects.filter(pk=booking.pk).delete()
    reference, fast = stores.OrmStore().read(attempt.pk), stores.PostgresStore().read(attempt.pk)
    assert _graph(fast) == _graph(reference)
    assert "booking" in fast.saga._state.fields_cache
    assert stores.PostgresStore().read(attempt.pk + 10**9) is None


def test_an_attempt_whose_saga_lost_its_booking_is_read_without_it(resource):
    booking = booked(resource)
    attempt = scheduled(booking.saga_id)
    Booking.objects.filter(pk=booking.pk).delete()
    row = stores.current().read(attempt.pk)
    assert row is not None and row.saga.pk == booking.saga_id
    with CaptureQueriesContext(connection) as q:
        assert BOOKING_SAGA.hooks.load_target(row.saga) is None
    assert not q.captured_queries  # known missing, not read again


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
    assert Event.objects.count() == 1  # the first booking's booking.created
