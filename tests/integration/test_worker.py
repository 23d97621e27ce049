"""End to end with a real Celery worker process on the real broker and database: every sandbox
magic value, cancellation, and ten bookings racing for one room."""

import pytest

from bookings.models import Booking
from bookings.providers.models import EmailRecord
from bookings.services import booking_cancel
from sandbox.models import PaymentAuthorization

from ..factories import ResourceFactory
from ..helpers import assert_invariants, book, reload, wait_for, wait_settled

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    "token,email,resource_code,state,reason",
    [
        ("tok_visa", "guest@example.com", "garden-room", "completed", ""),
        ("tok_declined", "guest@example.com", "garden-room", "cancelled", "payment_declined"),
        ("tok_flaky", "guest@example.com", "garden-room", "completed", ""),
        ("tok_visa", "eve@fraud.test", "garden-room", "cancelled", "fraud_rejected"),
        ("tok_visa", "bounce@example.com", "garden-room", "requires_attention", ""),
        ("tok_visa", "guest@example.com", "sold-out", "cancelled", "unavailable"),
        ("tok_void_fails", "guest@example.com", "sold-out", "requires_attention", "unavailable"),
    ],
)
def test_each_magic_value_reaches_its_documented_end_state(
    worker, token, email, resource_code, state, reason
):
    ResourceFactory(code="garden-room", capacity=3)
    ResourceFactory(code="sold-out", capacity=0)
    from bookings.models import Resource

    booking = book(Resource.objects.get(code=resource_code), token=token, email=email)
    [booking] = wait_settled([booking], timeout=60)
    assert (booking.state, booking.cancellation_reason) == (state, reason)
    if state != "requires_attention":
        assert_invariants([booking])


def test_cancel_after_completion_undoes_everything_and_a_second_cancel_is_refused(worker):
    from bookings.errors import ApplicationError

    booking = book(ResourceFactory(code="garden-room"))
    [booking] = wait_settled([booking])
    assert booking.state == "completed"
    booking_cancel(booking=booking, actor="client")
    wait_for(lambda: reload(booking).state == "cancelled", timeout=60, what="cancellation")
    booking = reload(booking)
    assert booking.cancellation_reason == "customer_cancelled"
    assert PaymentAuthorization.objects.get().status == "voided"
    assert EmailRecord.objects.filter(template="booking_cancelled", status="sent").count() == 1
    with pytest.raises(ApplicationError):
        booking_cancel(booking=booking)
    assert_invariants([booking])


def test_cancel_while_in_flight_ends_cancelled_with_the_hold_voided(worker):
    booking = book(ResourceFactory(code="garden-room"), token="tok_flaky")
    # tok_flaky keeps the saga in pre-authorization for a few retries
    wait_for(lambda: reload(booking).state == "preauthorizing", timeout=30, what="preauth")
    booking_cancel(booking=reload(booking), actor="client")
    [booking] = wait_settled([booking])
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "customer_cancelled")
    assert_invariants([booking])


def test_ten_bookings_for_one_room_on_the_same_nights_end_with_exactly_one_stay(worker):
    room = ResourceFactory(code="single", capacity=1)
    bookings = [book(room, email=f"guest{i}@example.com") for i in range(10)]
    settled = wait_settled(bookings, timeout=120)
    states = sorted((b.state, b.cancellation_reason) for b in settled)
    assert states == [("cancelled", "unavailable")] * 9 + [("completed", "")]
    voided = PaymentAuthorization.objects.filter(status="voided").count()
    assert voided == 9
    assert Booking.objects.filter(state="completed", payment_status="authorized").count() == 1
    assert_invariants(bookings)
