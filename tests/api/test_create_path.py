"""The create path's cost: the answer is the booking as it is written (no read-back of the new
booking), and an Idempotency-Key adds its record, holding that answer, to the booking's own
write."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bookings import services
from bookings.api import idempotency
from bookings.api.serializers import BookingSerializer
from bookings.api.views import represented_bookings
from bookings.models import Booking, IdempotencyKey
from sagas import store
from webhooks.models import Event

from ..factories import stay
from .helpers import booking_body

BOOKINGS = "/api/v1/bookings/"


def _create(garden, **extra):
    check_in, check_out = stay(10, 2)
    return services.booking_create(
        resource_code=garden.code,
        check_in=check_in,
        check_out=check_out,
        guest_name="Grace Hopper",
        guest_email="grace@example.com",
        payment_token="tok_visa",
        **extra,
    )


@pytest.mark.django_db
def test_a_new_booking_is_shown_as_written_without_a_query(garden, django_assert_num_queries):
    """booking_create hands `also` the booking's representation as it is written (its
    booking.created event's data): the API answers with it, and a later read shows the same."""
    seen = []
    booking = _create(garden, also=lambda booking, shown: seen.append(shown) or [])
    (shown,) = seen
    assert len(shown["timeline"]) == 1 and shown["timeline"][0]["status"] == "scheduled"
    assert shown == BookingSerializer(represented_bookings().get(pk=booking.pk)).data
    assert shown == Event.objects.get(subject_id=str(booking.pk)).data


def _statements(api, **headers):
    with CaptureQueriesContext(connection) as q:
        response = api.post(BOOKINGS, booking_body(), format="json", **headers)
    assert response.status_code == 201, response.content
    return response, [s["sql"].split(" ", 1)[0] + " " + _table(s["sql"]) for s in q]


def _table(sql: str) -> str:
    for word in ("FROM", "INTO", "UPDATE"):
        if f"{word} " in sql:
            return sql.split(f"{word} ", 1)[1].split(" ", 1)[0].strip('"')
    return ""


@pytest.mark.django_db
def test_the_create_answer_reads_nothing_back(alice, garden):
    response, statements = _statements(alice)
    reads = [s for s in statements if s.startswith("SELECT")]
    # The token (authentication) and the resource (the service's rules); the webhook outbox may
    # read its own tables. Never the new booking, its saga or its attempts.
    assert not {s for s in reads if s.split(" ")[1] in ("bookings_booking", "sagas_saga",
                                                        "sagas_sagastep")}  # fmt: skip
    assert alice.get(response["Location"]).json() == response.json()


@pytest.mark.django_db
def test_a_record_an_earlier_version_left_without_its_answer_replays_the_booking(alice, garden):
    """Versions before 2026-12-06 stored the answer by a second statement; a request that died
    between the two left the record without it. A retry gets that booking (never a second
    one), and the answer is kept from then on."""
    booking = _create(garden, owner=alice.user)
    IdempotencyKey.objects.create(
        owner=alice.user,
        key="key-1",
        fingerprint=idempotency.fingerprint(booking_body()),
        response_status=idempotency.PENDING,
        response_body={},
        booking=booking,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    response = alice.post(BOOKINGS, booking_body(), format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert response.status_code == 201 and response["Idempotent-Replayed"] == "true"
    assert response.json()["id"] == str(booking.pk)
    assert Booking.objects.count() == 1
    stored = IdempotencyKey.objects.get()
    assert stored.response_status == 201 and stored.response_body == response.json()


@pytest.mark.django_db
def test_a_conflict_that_is_not_the_key_is_not_taken_for_a_replay(garden):
    """Another unique violation during the create (here a second resource with the garden's
    code) is raised as it is: it is not replayed as the key's answer, and no record stays."""
    from django.db import IntegrityError

    from bookings.models import Resource

    from ..factories import UserFactory

    def create(also):
        Resource.objects.create(code=garden.code, name="Twin", capacity=1, nightly_price=1)
        raise AssertionError("the clash above must raise")

    with pytest.raises(IntegrityError):
        idempotency.create_once(
            owner=UserFactory(),
            key="key-1",
            request_fingerprint="f",
            create=create,
            represent=lambda booking_id: {},
        )
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_one_statement_start_with_a_key_writes_the_key_in_the_same_statement(alice, garden):
    """As under gunicorn (no transaction open): a create with a key is the plain create's one
    write with the key's record, holding its answer, in it; a replay and a 422 write nothing."""
    if not isinstance(store.current(), store.PostgresStore):
        pytest.skip("the one-statement start is the PostgreSQL store's")
    _, plain = _statements(alice)
    assert [s for s in plain if not s.startswith("SELECT")] == ["WITH new0"], plain
    with CaptureQueriesContext(connection) as q:
        response = alice.post(BOOKINGS, booking_body(), format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert response.status_code == 201, response.content
    writes = [s["sql"] for s in q if not s["sql"].startswith("SELECT")]
    # One statement: saga, booking, first attempt, event and the key's record with its answer.
    assert len(writes) == 1, writes
    assert writes[0].startswith("WITH") and '"bookings_idempotencykey"' in writes[0]
    assert IdempotencyKey.objects.get().response_body == response.json()
    replay = alice.post(BOOKINGS, booking_body(), format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert replay.json() == response.json() and replay["Idempotent-Replayed"] == "true"
    other = alice.post(
        BOOKINGS, booking_body(guest_name="Ada"), format="json", HTTP_IDEMPOTENCY_KEY="key-1"
    )
    assert other.status_code == 422
    assert Booking.objects.count() == 2  # the plain create's and the keyed one's
