"""Cancelling through the API: accepted while in flight and once completed, refused (409) when
the state machine forbids it, invisible for another client's booking."""

from __future__ import annotations

import pytest

from bookings.consistency import consistency_report
from bookings.models import Booking
from bookings.providers.models import InventoryReservation
from sagas.models import SagaEvent
from sandbox.models import PaymentAuthorization

from ..helpers import book, drive, reload
from .helpers import assert_error

pytestmark = pytest.mark.django_db


def cancel_url(booking: Booking) -> str:
    return f"/api/v1/bookings/{booking.pk}/cancel/"


def test_cancel_in_flight_is_accepted_and_takes_effect_at_the_next_step_boundary(alice, garden):
    booking = book(garden, owner=alice.user)
    response = alice.post(cancel_url(booking), {"reason": "plans changed"}, format="json")
    assert response.status_code == 202
    assert response.json()["cancel_requested_at"] is not None
    event = SagaEvent.objects.get(saga_id=booking.saga_id, kind="cancel")
    assert (event.actor, event.reason) == ("api:alice", "plans changed")
    drive(booking.saga_id)
    booking = reload(booking)
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "customer_cancelled")


def test_a_second_cancel_while_the_first_is_under_way_is_409(alice, garden):
    booking = book(garden, owner=alice.user)
    assert alice.post(cancel_url(booking)).status_code == 202
    error = assert_error(alice.post(cancel_url(booking)), 409, "not_cancellable")
    assert "already under way" in error["message"]


def test_cancel_after_completion_compensates_at_once_and_voids_the_hold(alice, garden):
    booking = book(garden, owner=alice.user)
    drive(booking.saga_id)
    response = alice.post(cancel_url(booking), format="json")
    assert response.status_code == 202
    assert response.json()["state"] == "compensating"
    drive(booking.saga_id)
    booking = reload(booking)
    assert (booking.state, booking.payment_status) == ("cancelled", "voided")
    assert PaymentAuthorization.objects.get().status == "voided"
    error = assert_error(alice.post(cancel_url(booking)), 409, "not_cancellable")
    assert error["message"] == f"Booking {booking.reference}: it is cancelled already."


def test_a_cancel_of_a_booking_an_operator_is_undoing_says_so_in_the_clients_terms(alice, garden):
    booking = book(garden, owner=alice.user, token="tok_void_fails")
    drive(booking.saga_id)
    assert alice.post(cancel_url(booking), format="json").status_code == 202
    drive(booking.saga_id)
    assert reload(booking).state == "requires_attention"  # the void keeps failing
    error = assert_error(alice.post(cancel_url(booking)), 409, "not_cancellable")
    assert "waits for an operator" in error["message"] and "saga" not in error["message"]


def test_a_cancel_frees_the_room_and_the_card_even_when_its_e_mail_cannot_be_sent(alice, garden):
    """The guest's mailbox bounces: the confirmation e-mail parked the booking, and the
    cancellation e-mail fails too. The cancel still releases the room and voids the hold; the
    e-mail's failed attempts stay in the timeline."""
    booking = book(garden, owner=alice.user, email="bounce@example.com")
    drive(booking.saga_id)
    assert reload(booking).state == "requires_attention"
    assert alice.post(cancel_url(booking), format="json").status_code == 202
    drive(booking.saga_id)
    booking = reload(booking)
    assert (booking.state, booking.payment_status) == ("cancelled", "voided")
    assert PaymentAuthorization.objects.get().status == "voided"
    assert InventoryReservation.objects.get().status == "released"
    timeline = alice.get(f"/api/v1/bookings/{booking.pk}/").json()["timeline"]
    undo = [(s["name"], s["status"]) for s in timeline if s["direction"] == "compensation"]
    assert undo[-3:] == [("send_email", "failed"), ("confirm", "succeeded"),
                         ("preauthorize", "succeeded")]  # fmt: skip
    assert consistency_report(booking_ids=[booking.pk]).ok  # nothing left held or unrecorded


def test_another_clients_booking_cannot_be_cancelled_and_is_not_revealed(alice, bob, garden):
    theirs = book(garden, owner=bob.user)
    assert_error(alice.post(cancel_url(theirs)), 404, "not_found")
    assert not SagaEvent.objects.filter(kind="cancel").exists()


def test_staff_who_may_see_a_booking_still_cannot_cancel_it_as_its_client(staff, bob, garden):
    theirs = book(garden, owner=bob.user)
    assert_error(staff.post(cancel_url(theirs)), 403, "permission_denied")
    assert not SagaEvent.objects.filter(kind="cancel").exists()


def test_an_invalid_cancel_body_is_a_400(alice, garden):
    booking = book(garden, owner=alice.user)
    error = assert_error(
        alice.post(cancel_url(booking), {"reason": "x" * 501}, format="json"), 400, "invalid"
    )
    assert list(error["fields"]) == ["reason"]
    assert not SagaEvent.objects.filter(kind="cancel").exists()
