"""The booking saga driven step by step in this process against the sandbox providers: each
magic value ends in its documented state with the right reason, effects and e-mails."""

import pytest
from django.core import mail

from bookings.models import Booking
from bookings.providers.models import EmailRecord, FraudScreeningRecord, InventoryReservation
from bookings.services import booking_cancel
from sagas.models import SagaStep
from sandbox.models import PaymentAuthorization

from ..factories import ResourceFactory
from ..helpers import assert_invariants, book, drive, reload

pytestmark = pytest.mark.django_db


def run(resource, **kwargs) -> Booking:
    booking = book(resource, **kwargs)
    drive(booking.saga_id)
    return reload(booking)


def attempts(booking, name, direction="action"):
    return list(
        SagaStep.objects.filter(saga_id=booking.saga_id, name=name, direction=direction)
        .order_by("id")
        .values_list("status", flat=True)
    )


def test_happy_path_completes_with_one_authorization_one_room_and_one_email(resource):
    booking = run(resource)
    assert booking.state == "completed" and booking.cancellation_reason == ""
    assert booking.payment_status == "authorized" and booking.room_status == "reserved"
    assert booking.amount == resource.nightly_price * 2
    assert PaymentAuthorization.objects.get().status == "authorized"
    assert InventoryReservation.objects.get().status == "reserved"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert booking.reference in message.subject and message.to == ["guest@example.com"]
    assert booking.reference in message.alternatives[0][0]  # the HTML part
    assert_invariants([booking])


def test_fraud_address_is_rejected_with_nothing_to_undo(resource):
    booking = run(resource, email="mallory@fraud.test")
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "fraud_rejected")
    assert booking.fraud_decision == "rejected"
    assert FraudScreeningRecord.objects.get().approved is False
    assert not PaymentAuthorization.objects.exists()
    assert_invariants([booking])


def test_declined_card_cancels_without_a_void(resource):
    booking = run(resource, token="tok_declined")
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "payment_declined")
    assert booking.payment_status == "declined"
    assert attempts(booking, "preauthorize") == ["failed"]
    assert attempts(booking, "preauthorize", "compensation") == []
    assert_invariants([booking])


def test_flaky_card_is_authorized_on_the_third_attempt(resource):
    booking = run(resource, token="tok_flaky")
    assert booking.state == "completed"
    assert attempts(booking, "preauthorize") == ["retrying", "retrying", "succeeded"]
    auth = PaymentAuthorization.objects.get()
    assert (auth.attempts, auth.status) == (3, "authorized")


def test_sold_out_resource_cancels_as_unavailable_and_voids_the_authorization():
    sold_out = ResourceFactory(code="sold-out", capacity=0)
    booking = run(sold_out)
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "unavailable")
    assert booking.payment_status == "voided"
    assert PaymentAuthorization.objects.get().status == "voided"
    assert_invariants([booking])


def test_void_that_keeps_failing_parks_the_booking_with_its_hold_visible():
    sold_out = ResourceFactory(code="sold-out", capacity=0)
    booking = run(sold_out, token="tok_void_fails")
    assert booking.state == "requires_attention"
    assert booking.cancellation_reason == "unavailable"
    assert "compensation of preauthorize failed" in booking.attention_reason
    assert booking.payment_status == "authorized"  # the hold an operator must release
    assert attempts(booking, "preauthorize", "compensation") == ["retrying", "retrying", "failed"]
    assert PaymentAuthorization.objects.get().void_attempts == 3


def test_bouncing_email_parks_the_booking_with_room_and_hold_intact(resource):
    booking = run(resource, email="bounce@example.com")
    assert booking.state == "requires_attention"
    assert booking.cancellation_reason == ""
    assert booking.payment_status == "authorized" and booking.room_status == "reserved"
    assert attempts(booking, "send_email") == ["retrying", "retrying", "failed"]
    assert EmailRecord.objects.get().attempts == 3 and not mail.outbox


def test_cancelling_a_completed_booking_releases_voids_and_sends_a_cancellation(resource):
    booking = run(resource)
    assert booking_cancel(booking=booking, actor="client") == "compensating"
    drive(booking.saga_id)
    booking = reload(booking)
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "customer_cancelled")
    assert booking.payment_status == "voided" and booking.room_status == "released"
    assert booking.cancellation_sent_at is not None
    assert [m.subject.split()[-1] for m in mail.outbox] == ["confirmed", "cancelled"]
    assert_invariants([booking])


def test_cancelling_in_flight_undoes_what_was_done_at_the_next_boundary(resource):
    booking = book(resource)
    from sagas import engine

    from ..helpers import scheduled

    engine.execute(scheduled(booking.saga_id).pk)  # fraud check passes
    booking_cancel(booking=reload(booking), actor="client")
    assert reload(booking).state == "preauthorizing"  # the switch waits for the boundary
    drive(booking.saga_id)
    booking = reload(booking)
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "customer_cancelled")
    # pre-authorization was already scheduled: it ran, and its hold was voided
    assert PaymentAuthorization.objects.get().status == "voided"
    assert not InventoryReservation.objects.exists()


def test_a_cancelled_booking_cannot_be_cancelled_again(resource):
    from bookings.errors import ApplicationError

    booking = run(resource, token="tok_declined")
    with pytest.raises(ApplicationError) as err:
        booking_cancel(booking=booking)
    assert err.value.status == 409


def test_an_operator_action_on_a_booking_that_moved_meanwhile_is_refused(resource):
    from bookings.errors import ApplicationError
    from bookings.services import booking_resolve, booking_retry

    booking = run(resource, email="bounce@example.com")
    assert booking.state == "requires_attention"
    booking_retry(booking=booking, actor="ann", reason="mail fixed", expected_state=booking.state)
    # Bob's page still shows requires_attention: his resolve must not act on a moved booking.
    with pytest.raises(ApplicationError) as err:
        booking_resolve(
            booking=booking,
            outcome="completed",
            actor="bob",
            reason="sent by hand",
            expected_state="requires_attention",
        )
    assert err.value.status == 409 and "moved" in err.value.message
    assert reload(booking).state == "notifying"


def test_operator_actions_need_a_reason(resource):
    from bookings.errors import ApplicationError
    from bookings.services import booking_compensate

    booking = run(resource)
    with pytest.raises(ApplicationError, match="reason"):
        booking_compensate(booking=booking, actor="ann", reason="  ")
    assert reload(booking).state == "completed"
