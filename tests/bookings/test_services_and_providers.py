"""booking_create's validation, and the sandbox providers' promises: same key, same answer; no
overbooking under concurrency."""

import threading
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from bookings.errors import ApplicationError
from bookings.models import Booking
from bookings.providers.inventory import SandboxInventory
from bookings.providers.models import InventoryReservation, PaymentAuthorization
from bookings.providers.payments import SandboxPaymentGateway
from bookings.services import booking_create
from sagas.errors import TransientError
from sagas.models import Saga
from tests.faults.injection import messages_lost

from ..conftest import ON_POSTGRES, postgres_only
from ..factories import ResourceFactory, stay
from ..helpers import book

pytestmark = pytest.mark.django_db


def create(resource_code="garden-room", **overrides):
    check_in, check_out = stay()
    fields = {
        "resource_code": resource_code,
        "check_in": check_in,
        "check_out": check_out,
        "guest_name": "Ada",
        "guest_email": "ada@example.com",
        "payment_token": "tok_visa",
        **overrides,
    }
    return booking_create(**fields)


def test_create_computes_the_amount_and_starts_the_saga_in_one_go(resource):
    booking = create(
        check_in=date.today() + timedelta(days=3), check_out=date.today() + timedelta(days=6)
    )
    assert booking.amount == Decimal("300.00") and booking.currency == "EUR"
    assert booking.state == "fraud_check"
    assert booking.saga.status == Saga.Status.RUNNING
    assert booking.saga.current_step == "fraud_check"
    assert booking.saga.payload["reference"] == booking.reference


def test_keys_of_new_bookings_and_sagas_sort_in_the_order_they_were_made(resource):
    """Time-ordered keys: each new row goes to the end of its indexes, not a random page of
    them (sagas.models.time_ordered_id), and the keys stay unguessable (74 random bits)."""
    made = [create(guest_email=f"guest{i}@example.com") for i in range(30)]
    in_order = [b.pk for b in made]
    assert list(Booking.objects.order_by("pk").values_list("pk", flat=True)) == in_order
    assert list(Saga.objects.order_by("pk").values_list("pk", flat=True)) == [
        b.saga_id for b in made
    ]
    assert list(Saga.objects.order_by("target_id").values_list("target_id", flat=True)) == [
        str(pk) for pk in in_order
    ]
    assert {b.pk.version for b in made} == {b.saga_id.version for b in made} == {7}
    assert len({b.pk.int & (2**62 - 1) for b in made}) == 30  # the random low bits differ


def test_a_reference_or_a_providers_key_is_stored_once(resource):
    """The unique constraints that replaced unique=True still refuse a second row."""
    first, second = create(), create(guest_email="other@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        Booking.objects.filter(pk=second.pk).update(reference=first.reference)
    held = SandboxPaymentGateway().authorize(
        idempotency_key="k1", token="tok_visa", amount=Decimal(10), currency="EUR"
    )
    for duplicate in ({"idempotency_key": "k1"}, {"reference": held.reference}):
        with pytest.raises(IntegrityError), transaction.atomic():
            PaymentAuthorization.objects.create(
                **{"idempotency_key": "k2", "reference": "AUTH-other", **duplicate},
                token="tok_visa",
                amount=Decimal(10),
                currency="EUR",
            )
    assert PaymentAuthorization.objects.count() == 1


@pytest.mark.skipif(not ON_POSTGRES, reason="LIKE-pattern indexes are PostgreSQL's")
def test_no_table_a_saga_writes_keeps_a_like_pattern_index():
    """unique=True or db_index=True on a CharField adds a varchar_pattern_ops twin on PostgreSQL;
    no query here matches by pattern, and every new booking would maintain it."""
    with connection.cursor() as c:
        c.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
            " AND indexname LIKE '%%_like' AND tablename ~ '^(bookings_|sagas_|providers_)'"
        )
        assert [name for (name,) in c.fetchall()] == ["bookings_resource_code_595f93ff_like"]


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"resource_code": "nope"}, "resource"),
        ({"check_in": date.today() - timedelta(days=1)}, "check_in"),
        ({"check_out": date.today() + timedelta(days=10)}, "check_out"),  # same day as check-in
        ({"check_out": date.today() + timedelta(days=5)}, "check_out"),  # before check-in
        ({"check_out": date.today() + timedelta(days=60)}, "check_out"),  # too long
        ({"guest_email": "not-an-email"}, "guest_email"),
        ({"guest_name": ""}, "guest_name"),
        ({"guest_name": "x" * 121}, "guest_name"),
        ({"guest_name": "a\x00b"}, "guest_name"),
        ({"payment_token": "4242424242424242"}, "payment_token"),
    ],
)
def test_invalid_input_is_refused_per_field_and_changes_nothing(resource, overrides, field):
    with pytest.raises(ApplicationError) as err:
        create(**overrides)
    assert field in err.value.extra and err.value.status == 400
    assert not Booking.objects.exists() and not Saga.objects.exists()


def test_inactive_resource_is_not_bookable():
    ResourceFactory(code="closed", active=False)
    with pytest.raises(ApplicationError):
        create("closed")


def test_payment_gateway_returns_the_same_answer_for_the_same_key():
    gateway = SandboxPaymentGateway()
    first = gateway.authorize(
        idempotency_key="k1", token="tok_visa", amount=Decimal(10), currency="EUR"
    )
    again = gateway.authorize(
        idempotency_key="k1", token="tok_visa", amount=Decimal(10), currency="EUR"
    )
    assert first == again and PaymentAuthorization.objects.count() == 1
    assert gateway.void(idempotency_key="v1", authorization_ref=first.reference).status == "voided"
    assert gateway.void(idempotency_key="v1", authorization_ref=first.reference).status == "voided"
    assert gateway.lookup(idempotency_key="k1").status == "voided"
    assert gateway.lookup(idempotency_key="unknown") is None


def test_void_fails_token_fails_every_void():
    gateway = SandboxPaymentGateway()
    auth = gateway.authorize(
        idempotency_key="k", token="tok_void_fails", amount=Decimal(1), currency="EUR"
    )
    for _ in range(3):
        with pytest.raises(TransientError):
            gateway.void(idempotency_key="v", authorization_ref=auth.reference)
    assert PaymentAuthorization.objects.get().status == "authorized"


def test_inventory_counts_each_night_and_releases():
    room = ResourceFactory(code="one", capacity=1)
    inv = SandboxInventory()
    d = date.today() + timedelta(days=20)
    a = inv.reserve(
        idempotency_key="a", resource_code="one", check_in=d, check_out=d + timedelta(days=3)
    )
    assert a.status == "reserved"
    # overlaps the last night only
    b = inv.reserve(
        idempotency_key="b",
        resource_code="one",
        check_in=d + timedelta(days=2),
        check_out=d + timedelta(days=4),
    )
    assert b.status == "unavailable"
    # starts on a's check-out day: no overlap
    c = inv.reserve(
        idempotency_key="c",
        resource_code="one",
        check_in=d + timedelta(days=3),
        check_out=d + timedelta(days=4),
    )
    assert c.status == "reserved"
    assert (
        inv.reserve(
            idempotency_key="a", resource_code="one", check_in=d, check_out=d + timedelta(days=3)
        )
        == a
    )
    inv.release(idempotency_key="ra", reservation_ref=a.reference)
    retry_b = inv.reserve(
        idempotency_key="b2",
        resource_code="one",
        check_in=d + timedelta(days=2),
        check_out=d + timedelta(days=3),
    )
    assert retry_b.status == "reserved"
    assert room.capacity == 1


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_never_overbook():
    ResourceFactory(code="pair", capacity=2)
    d = date.today() + timedelta(days=30)
    barrier = threading.Barrier(8)
    results: list[str] = []

    def reserve(i: int) -> None:
        barrier.wait()
        try:
            results.append(
                SandboxInventory()
                .reserve(
                    idempotency_key=f"k{i}",
                    resource_code="pair",
                    check_in=d,
                    check_out=d + timedelta(days=2),
                )
                .status
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["reserved"] * 2 + ["unavailable"] * 6
    assert InventoryReservation.objects.filter(status="reserved").count() == 2


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_reservation_in_progress_does_not_hold_up_new_bookings_of_its_resource():
    """The sandbox locks the resource row while it counts nights; a booking being created for
    that resource (its foreign key check reads the same row) must not wait for it."""
    room = ResourceFactory(code="busy", capacity=5)
    d = date.today() + timedelta(days=40)
    with CaptureQueriesContext(connection) as q:
        SandboxInventory().reserve(
            idempotency_key="first", resource_code="busy", check_in=d, check_out=d + timedelta(1)
        )
    lock = next(x["sql"] for x in q.captured_queries if "bookings_resource" in x["sql"])
    holding, release = threading.Event(), threading.Event()
    created: list[bool] = []

    def reservation_in_progress() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(lock)  # the lock reserve() takes, held meanwhile
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    def new_booking() -> None:
        try:
            with messages_lost():
                book(room)
            created.append(True)
        finally:
            connection.close()

    holder = threading.Thread(target=reservation_in_progress)
    holder.start()
    assert holding.wait(10)
    booker = threading.Thread(target=new_booking)
    booker.start()
    booker.join(5)
    created_while_held = bool(created)
    release.set()
    holder.join()
    booker.join()
    assert created_while_held  # it did not wait for the reservation to commit
