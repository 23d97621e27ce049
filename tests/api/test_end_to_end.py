"""The API end to end with a real Celery worker on the real broker and database: create and
wait, cancel after completion; nothing of the project is replaced."""

import pytest
from rest_framework.test import APIClient

from bookings.models import Booking
from sandbox.models import PaymentAuthorization

from ..helpers import assert_invariants, wait_for
from .helpers import assert_error, booking_body

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_create_with_prefer_wait_then_cancel_after_completion_voids_the_hold(
    worker, client_for, garden
):
    alice: APIClient = client_for(username="alice")
    created = alice.post("/api/v1/bookings/", booking_body(), format="json", HTTP_PREFER="wait=20")
    assert created.status_code == 201 and created["Preference-Applied"] == "wait=20"
    body = created.json()
    assert (body["state"], body["payment_status"]) == ("completed", "authorized")
    url = f"/api/v1/bookings/{body['id']}/"

    cancelled = alice.post(f"{url}cancel/", HTTP_PREFER="wait=20")
    assert cancelled.status_code == 202
    body = cancelled.json()
    assert (body["state"], body["cancellation_reason"], body["payment_status"]) == (
        "cancelled",
        "customer_cancelled",
        "voided",
    )
    assert PaymentAuthorization.objects.get().status == "voided"
    assert [(s["name"], s["direction"]) for s in body["timeline"]][-3:] == [
        ("send_email", "compensation"),
        ("confirm", "compensation"),
        ("preauthorize", "compensation"),
    ]
    assert_error(alice.post(f"{url}cancel/"), 409, "not_cancellable")
    assert_invariants()


def test_create_without_prefer_answers_at_once_and_the_client_polls_to_completion(
    worker, client_for, garden
):
    alice: APIClient = client_for(username="alice")
    created = alice.post("/api/v1/bookings/", booking_body(), format="json")
    assert created.status_code == 201 and "Preference-Applied" not in created
    url = created["Location"]
    wait_for(lambda: alice.get(url).json()["state"] == "completed", timeout=60, what="completed")
    assert Booking.objects.get(pk=created.json()["id"]).payment_status == "authorized"
