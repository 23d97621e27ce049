"""Idempotency-Key on create: replay, mismatch, expiry, scope per client, and concurrency."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from bookings.models import Booking, IdempotencyKey
from bookings.tasks import purge_expired_idempotency_keys

from ..conftest import postgres_only
from .helpers import assert_error, booking_body

BOOKINGS = "/api/v1/bookings/"


def post(api, body, key, **extra):
    return api.post(BOOKINGS, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


@pytest.mark.django_db
def test_the_same_key_and_body_replays_the_first_answer_without_a_second_booking(alice, garden):
    body = booking_body()
    first = post(alice, body, "key-1")
    again = post(alice, dict(reversed(list(body.items()))), "key-1")  # key order is irrelevant
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Booking.objects.count() == 1


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_a_422(alice, garden):
    assert post(alice, booking_body(), "key-1").status_code == 201
    assert_error(
        post(alice, booking_body(guest_name="Ada"), "key-1"), 422, "idempotency_key_reused"
    )
    assert Booking.objects.count() == 1


@pytest.mark.django_db
def test_keys_are_per_client(alice, bob, garden):
    assert post(alice, booking_body(), "shared").status_code == 201
    response = post(bob, booking_body(), "shared")
    assert response.status_code == 201 and "Idempotent-Replayed" not in response
    assert Booking.objects.count() == 2


@pytest.mark.django_db
def test_an_expired_key_starts_afresh(alice, garden, settings):
    assert settings.API_IDEMPOTENCY_TTL == 24 * 3600
    first = post(alice, booking_body(), "key-1")
    record = IdempotencyKey.objects.get()
    assert timedelta(hours=23) < record.expires_at - timezone.now() <= timedelta(hours=24)
    IdempotencyKey.objects.update(
        expires_at=timezone.now() - timedelta(seconds=1),
        created_at=timezone.now() - timedelta(days=1, seconds=1),
    )
    second = post(alice, booking_body(guest_name="Ada"), "key-1")
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
    taken_over = IdempotencyKey.objects.get()
    assert taken_over.booking_id == Booking.objects.get(guest_name="Ada").pk
    # Nothing of the expired record is left: its body, its times, its fingerprint.
    assert taken_over.response_body == second.json()
    assert timezone.now() - taken_over.created_at < timedelta(minutes=1)
    assert timedelta(hours=23) < taken_over.expires_at - timezone.now()
    again = post(alice, booking_body(guest_name="Ada"), "key-1")  # the new body replays
    assert again.json() == second.json() and again["Idempotent-Replayed"] == "true"
    assert_error(post(alice, booking_body(), "key-1"), 422, "idempotency_key_reused")


@pytest.mark.django_db
def test_expired_keys_are_purged_off_the_request_path_by_the_periodic_task(alice, bob, garden):
    for api, key in ((alice, "old-1"), (alice, "old-2"), (bob, "old-3"), (alice, "live")):
        assert post(api, booking_body(), key).status_code == 201
    IdempotencyKey.objects.exclude(key="live").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert post(alice, booking_body(guest_name="Ada"), "new").status_code == 201
    assert IdempotencyKey.objects.count() == 5  # a create deletes nothing
    assert purge_expired_idempotency_keys() == 3
    kept = set(IdempotencyKey.objects.values_list("key", flat=True))
    assert kept == {"live", "new"}
    assert "bookings.tasks.purge_expired_idempotency_keys" in {
        entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }


@pytest.mark.django_db
def test_the_created_answer_is_the_booking_as_read_back(alice, garden):
    created = post(alice, booking_body(), "key-1")
    assert created.status_code == 201
    assert alice.get(created["Location"]).json() == created.json()


@pytest.mark.django_db
def test_the_expiry_is_configurable(alice, garden, settings):
    settings.API_IDEMPOTENCY_TTL = 60
    post(alice, booking_body(), "key-1")
    assert IdempotencyKey.objects.get().expires_at - timezone.now() <= timedelta(seconds=60)


@pytest.mark.django_db
def test_a_request_that_fails_validation_is_not_stored(alice, garden):
    assert_error(post(alice, booking_body(resource="nowhere"), "key-1"), 400, "invalid")
    assert not IdempotencyKey.objects.exists()
    assert post(alice, booking_body(), "key-1").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "caf\u00e9"])
def test_an_unusable_key_is_a_400(alice, garden, key):
    assert_error(post(alice, booking_body(), key), 400, "invalid_idempotency_key")
    assert not Booking.objects.exists()


@pytest.mark.django_db
def test_a_replay_after_prefer_wait_returns_the_body_that_was_sent(alice, garden, settings):
    settings.API_PREFER_WAIT_MAX = 0
    first = post(alice, booking_body(), "key-1", HTTP_PREFER="wait=0")
    assert first["Preference-Applied"] == "wait=0"
    assert post(alice, booking_body(), "key-1").json() == first.json()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_requests_with_one_key_create_one_booking(client_for, garden):
    """No transaction open (as under gunicorn): of eight requests with one key exactly one
    writes (its key's record in the start's one statement); the others replay its answer."""
    alice = client_for(username="alice")
    body, barrier, responses = booking_body(), threading.Barrier(8), []

    def send() -> None:
        try:
            barrier.wait()
            responses.append(post(alice, body, "same-moment"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in responses] == [201] * 8
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1  # one answer
    assert sum("Idempotent-Replayed" in r for r in responses) == 7
    assert Booking.objects.count() == 1 and IdempotencyKey.objects.count() == 1
