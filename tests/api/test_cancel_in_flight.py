"""Cancelling through the API while a step is under way, with a real worker. The worker pauses
after the room confirmation's provider call (a failpoint of the fault suite), so the cancel
lands while the payment is held and the step is in flight: it takes effect at the step
boundary and every effect is undone."""

import pytest

from sandbox.models import PaymentAuthorization

from ..helpers import assert_invariants, book, reload, wait_for, wait_settled
from .helpers import assert_error

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_cancel_while_a_step_is_in_flight_ends_cancelled_with_the_hold_voided(
    start_worker, client_for, garden
):
    start_worker("inflight", faults={"pause_after_action": {"confirm.action": 3}})
    alice = client_for(username="alice")
    booking = book(garden, owner=alice.user)
    wait_for(lambda: reload(booking).state == "confirming", timeout=30, what="confirming")
    assert PaymentAuthorization.objects.get().status == "authorized"

    response = alice.post(f"/api/v1/bookings/{booking.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["state"] == "confirming"
    assert response.json()["cancel_requested_at"] is not None
    assert_error(alice.post(f"/api/v1/bookings/{booking.pk}/cancel/"), 409, "not_cancellable")

    [booking] = wait_settled([booking], timeout=60)
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "customer_cancelled")
    assert booking.payment_status == "voided"
    assert PaymentAuthorization.objects.get().status == "voided"
    assert_invariants([booking])
