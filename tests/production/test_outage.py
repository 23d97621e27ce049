"""A provider outage with 200 sagas in flight: the payments circuit opens, the sagas wait for it
instead of spending their retries, none is cancelled, and all finish once the provider is back.
Real workers, the real broker and database (PostgreSQL and Redis in CI)."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from bookings.models import Booking
from bookings.providers.guard import circuit
from sagas.models import SagaStep
from sandbox import outage

from ..factories import ResourceFactory
from ..helpers import assert_invariants, book, settle_with_sweeper, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BREAKER = {"payments": {"failure_threshold": 3, "window": 60, "cool_down": 3}}
OUTAGE_SECONDS = 20


def test_payments_outage_with_200_sagas_in_flight_cancels_none_and_all_finish_after_it(
    start_worker, settings
):
    settings.BOOKING_CIRCUIT_BREAKERS = BREAKER
    env = {"BOOKING_CIRCUIT_BREAKERS": json.dumps(BREAKER)}
    start_worker("outage-a", extra_env=env)
    start_worker("outage-b", extra_env=env)
    room = ResourceFactory(code="garden-room", capacity=500)

    outage.take_down("payments", OUTAGE_SECONDS)
    down_since = time.monotonic()
    bookings = [book(room, email=f"guest{i}@example.com") for i in range(200)]

    # During the outage: the circuit opens and the sagas wait at pre-authorization.
    wait_for(
        lambda: circuit("payments").status().is_open, timeout=OUTAGE_SECONDS, what="circuit open"
    )
    waiting = Booking.objects.filter(state="preauthorizing").count()
    assert waiting > 0
    assert not Booking.objects.filter(state__in=["compensating", "cancelled"]).exists()

    # With the sweeper running, as Celery beat runs it in every deployment: on the filesystem
    # transport (the embedded default) a message can be lost, and the sweeper re-sends it.
    settled = settle_with_sweeper(bookings, timeout=OUTAGE_SECONDS + 240)
    assert time.monotonic() - down_since >= OUTAGE_SECONDS
    states = Counter((b.state, b.cancellation_reason) for b in settled)
    assert states == {("completed", ""): 200}, states
    preauth = SagaStep.objects.filter(name="preauthorize", direction="action")
    assert preauth.filter(error_code="circuit_open").exists()  # they waited, deferred
    # Waiting did not spend the retry budget: no attempt number reached the last one.
    assert (
        max(preauth.values_list("attempt", flat=True))
        < settings.SAGA_STEP_SETTINGS["booking.preauthorize"]["max_attempts"]
    )
    assert not circuit("payments").status().is_open
    assert_invariants(bookings)
