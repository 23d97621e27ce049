"""A payment token is a secret the saga needs: it is read from the booking when the
pre-authorization runs and never copied into the saga's payload, results or error, an
attempt's request, response or error, or the audit trail (all of which operators see)."""

import json

import pytest

from bookings.models import Booking
from sagas.models import Saga, SagaEvent, SagaStep

from ..factories import ResourceFactory
from ..helpers import book, drive, reload

pytestmark = pytest.mark.django_db

TOKENS = ["tok_visa_4242secret", "tok_flaky", "tok_void_fails", "tok_declined"]


def saga_rows_text(booking: Booking) -> str:
    """Everything the engine stored about the booking's saga, as one text."""
    saga = Saga.objects.get(pk=booking.saga_id)
    rows = [saga.payload, saga.results, saga.last_error, saga.reason]
    for step in SagaStep.objects.filter(saga=saga):
        rows += [step.request, step.response, step.error, step.idempotency_key]
    for event in SagaEvent.objects.filter(saga=saga):
        rows += [event.reason, event.data]
    return json.dumps(rows, default=str)


@pytest.mark.parametrize("token", TOKENS)
def test_the_payment_token_is_stored_on_the_booking_only(token):
    room = ResourceFactory(code="garden-room", capacity=3)
    sold_out = ResourceFactory(code="sold-out", capacity=0)
    # tok_void_fails on the sold-out room: authorized, refused a room, every void fails.
    booking = book(sold_out if token == "tok_void_fails" else room, token=token)
    drive(booking.saga_id)
    booking = reload(booking)
    assert booking.state in Booking.TERMINAL
    assert booking.payment_token == token
    stored = saga_rows_text(booking)
    assert token not in stored
    assert "tok_" not in stored


def test_the_pre_authorization_uses_the_token_read_from_the_booking():
    room = ResourceFactory(code="garden-room", capacity=3)
    declined = book(room, token="tok_declined")
    drive(declined.saga_id)
    assert reload(declined).cancellation_reason == "payment_declined"
    flaky = book(room, token="tok_flaky")
    drive(flaky.saga_id)
    attempts = SagaStep.objects.filter(saga_id=flaky.saga_id, name="preauthorize")
    assert list(attempts.values_list("status", flat=True)) == ["retrying", "retrying", "succeeded"]
    assert reload(flaky).state == "completed"
