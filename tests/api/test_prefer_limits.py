"""`Prefer: wait` is honoured for at most API_PREFER_WAIT_CONCURRENCY requests of a process at
once; beyond that the answer comes at once, without Preference-Applied (RFC 7240 lets a server
ignore a preference). The end-to-end check under gunicorn is tests/production/test_web_tier.py."""

from __future__ import annotations

import time

import pytest

from bookings.api import prefer

from .helpers import booking_body

pytestmark = pytest.mark.django_db

BOOKINGS = "/api/v1/bookings/"


def test_a_wait_beyond_the_process_limit_is_answered_at_once_without_preference_applied(
    alice, garden, settings
):
    settings.API_PREFER_WAIT_CONCURRENCY = 1
    settings.API_PREFER_WAIT_MAX = 5
    with prefer.wait_slot() as granted:  # another request of this process is waiting
        assert granted
        started = time.monotonic()
        response = alice.post(BOOKINGS, booking_body(), format="json", HTTP_PREFER="wait=5")
        assert time.monotonic() - started < 2
    assert response.status_code == 201
    assert "Preference-Applied" not in response

    settings.API_PREFER_WAIT_MAX = 0  # the slot is free again: honoured
    response = alice.post(BOOKINGS, booking_body(), format="json", HTTP_PREFER="wait=5")
    assert response["Preference-Applied"] == "wait=0"


def test_no_wait_is_honoured_when_the_limit_is_zero(alice, garden, settings):
    settings.API_PREFER_WAIT_CONCURRENCY = 0
    response = alice.post(BOOKINGS, booking_body(), format="json", HTTP_PREFER="wait=5")
    assert response.status_code == 201
    assert "Preference-Applied" not in response


def test_wait_slots_are_given_back_and_never_exceed_the_limit(settings):
    settings.API_PREFER_WAIT_CONCURRENCY = 2
    with prefer.wait_slot() as first, prefer.wait_slot() as second, prefer.wait_slot() as third:
        assert (first, second, third) == (True, True, False)
    with prefer.wait_slot() as again:
        assert again
