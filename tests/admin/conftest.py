"""Fixtures for the operator console: operators with and without each permission, and bookings
driven (synchronously, by the real engine and sandboxes) to the states an operator meets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from bookings.models import Booking
from sagas.models import SagaStep

from ..factories import ResourceFactory, UserFactory
from ..helpers import book, drive, reload


@pytest.fixture
def make_operator(db) -> Callable[..., Client]:
    """A logged-in staff client that may view bookings, plus the given permission codenames."""

    def make(*codenames: str, username: str = "olga") -> Client:
        user = UserFactory(username=username, is_staff=True)
        perms = Permission.objects.filter(
            content_type__app_label__in=["bookings", "sagas"],
            codename__in=["view_booking", "view_saga", "view_sagastep", *codenames],
        )
        user.user_permissions.set(perms)
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def operator(make_operator) -> Client:
    """May do everything an operator can."""
    return make_operator("retry_booking", "compensate_booking", "resolve_booking")


@pytest.fixture
def room(db) -> Any:
    return ResourceFactory(code="garden-room", capacity=5)


@pytest.fixture
def completed(room) -> Booking:
    booking = book(room, email="happy@example.com")
    drive(booking.saga_id)
    return reload(booking)


@pytest.fixture
def email_parked(room) -> Booking:
    """The confirmation e-mail bounced until retries ran out: requires attention, room and
    hold intact (the saga is still going forward)."""
    booking = book(room, email="bounce@example.com")
    drive(booking.saga_id)
    booking = reload(booking)
    assert booking.state == "requires_attention"
    return booking


@pytest.fixture
def void_parked(db) -> Booking:
    """Sold out, and the payment void keeps failing: parked while compensating."""
    booking = book(ResourceFactory(code="sold-out", capacity=0), token="tok_void_fails")
    drive(booking.saga_id)
    booking = reload(booking)
    assert booking.state == "requires_attention" and booking.cancellation_reason
    return booking


def make_stuck(room: Any, email: str = "stuck@example.com") -> Booking:
    """A booking whose first step was sent and never reported back, its lease run out (as
    after a lost worker)."""
    booking = book(room, email=email)
    SagaStep.objects.filter(saga_id=booking.saga_id, status="scheduled").update(
        lease_expires_at=timezone.now() - timedelta(minutes=2)
    )
    return reload(booking)
