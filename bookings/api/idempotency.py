"""Idempotency keys for `POST /api/v1/bookings/` (the IETF draft "The Idempotency-Key HTTP Header
Field"): a client that retries a create with the same key gets the first answer again, never a
second booking.

The key's record is written together with the booking, its saga and first attempt (all or
nothing: one statement on PostgreSQL when no transaction is open, see engine.start's `also`),
under a unique (client, key) constraint. Its answer is stored right after, by one UPDATE: the
answer shows the booking's created_at and updated_at, which the database write itself sets. A
concurrent request with the same key waits on the unique index until the first one's write
ends, then fails to insert (nothing of it is written), reads the record and replays its answer;
if that answer is not stored yet (the first request is between its two statements), it waits for
it a moment, and answers from the booking itself if it never comes (the first request died
between them). A body that fails validation writes nothing, so the client may correct it and
retry with the same key. An expired record is deleted when its key comes back, and the create
tried again; the others are deleted off the request path, by a periodic task (bookings/tasks.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from bookings.errors import ApplicationError
from bookings.models import Booking, IdempotencyKey

HEADER = "Idempotency-Key"
# Visible ASCII, as the draft recommends for a UUID or a random string.
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
# A record written with its booking whose answer is not stored yet (never seen otherwise).
PENDING = 0
CREATED = 201
# How long a replay waits for the first request to store its answer (normally a millisecond).
ANSWER_WAIT = 2.0


@dataclass(frozen=True)
class Result:
    status: int
    body: dict[str, Any]
    booking_id: Any
    replayed: bool


def parse_key(value: str | None) -> str | None:
    """The header's key, None without the header; a 400 for a key we would not store."""
    if value is None:
        return None
    if not KEY_PATTERN.fullmatch(value):
        raise ApplicationError(
            f"{HEADER} must be 1 to 255 visible ASCII characters (a UUID is a good choice).",
            status=400,
            code="invalid_idempotency_key",
            extra={HEADER: ["1 to 255 visible ASCII characters."]},
        )
    return value


def fingerprint(data: Any) -> str:
    """The same JSON body, whatever its key order or whitespace, gives the same fingerprint."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def new_record(
    *, owner: Any, key: str, request_fingerprint: str, booking: Booking
) -> IdempotencyKey:
    """The key's record for `booking` (not saved yet), to be written with it; its answer is
    stored once the booking is written (store_response)."""
    now = timezone.now()
    return IdempotencyKey(
        owner=owner,
        key=key,
        fingerprint=request_fingerprint,
        response_status=PENDING,
        response_body={},
        booking=booking,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.API_IDEMPOTENCY_TTL),
    )


def store_response(record: IdempotencyKey, status: int, body: dict[str, Any]) -> None:
    """Store the first answer in the key's record (written with the booking just before)."""
    IdempotencyKey.objects.filter(pk=record.pk).update(response_status=status, response_body=body)


def create_once(
    *,
    owner: Any,
    key: str,
    request_fingerprint: str,
    create: Callable[
        [Callable[[Booking], list[IdempotencyKey]]], tuple[int, dict[str, Any], Booking]
    ],
    represent: Callable[[Any], dict[str, Any]],
) -> Result:
    """Run `create` once per (owner, key) within the key's lifetime. `create(also)` makes the
    booking with the rows `also(booking)` returns written together with it (the key's record),
    and returns status, body and booking; the body is then stored in the record. A later call
    with the same body replays the stored answer; with another body it is a 422. `represent`
    shows a booking by id, for a record whose answer was never stored."""
    records: list[IdempotencyKey] = []  # the record of the last try

    def also(booking: Booking) -> list[IdempotencyKey]:
        records[:] = [
            new_record(
                owner=owner, key=key, request_fingerprint=request_fingerprint, booking=booking
            )
        ]
        return records

    for _ in range(3):  # a conflict with an expired record, or one purged meanwhile: again
        try:
            if connection.in_atomic_block:
                # In the caller's transaction: a savepoint, so that a conflict leaves it usable.
                with transaction.atomic():
                    status, body, booking = create(also)
            else:
                status, body, booking = create(also)
        except IntegrityError:
            stored = _stored(owner, key)
            if stored is None:
                raise  # not the key's constraint
            if stored.expires_at <= timezone.now():
                # An expired record does not count: the key starts afresh.
                IdempotencyKey.objects.filter(pk=stored.pk, expires_at__lte=timezone.now()).delete()
                continue
            return _replay(stored, request_fingerprint, represent)
        store_response(records[0], status, body)
        return Result(status, body, booking.pk, False)
    raise ApplicationError(
        f"This {HEADER} is being taken over; retry.", status=409, code="idempotency_key_busy"
    )


def _stored(owner: Any, key: str) -> IdempotencyKey | None:
    return IdempotencyKey.objects.filter(owner=owner, key=key).first()


def _replay(
    stored: IdempotencyKey, request_fingerprint: str, represent: Callable[[Any], dict[str, Any]]
) -> Result:
    if stored.fingerprint != request_fingerprint:
        raise ApplicationError(
            f"This {HEADER} was used with a different request body; use a new key "
            "for a new booking.",
            status=422,
            code="idempotency_key_reused",
        )
    deadline = time.monotonic() + ANSWER_WAIT
    pause = 0.005
    while stored.response_status == PENDING and time.monotonic() < deadline:
        # The first request wrote the record and its booking, and is storing its answer now.
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
        stored.refresh_from_db(fields=["response_status", "response_body"])
    if stored.response_status == PENDING:
        # Its request died between the booking's write and the answer's: answer from the
        # booking (the one the key made), and keep that answer for the next retry.
        body = represent(stored.booking_id)
        store_response(stored, CREATED, body)
        return Result(CREATED, body, stored.booking_id, True)
    return Result(stored.response_status, stored.response_body, stored.booking_id, True)


def update_response(*, owner: Any, key: str, body: dict[str, Any]) -> None:
    """Store the body finally sent (after a `Prefer: wait`), so a replay matches it."""
    IdempotencyKey.objects.filter(owner=owner, key=key).update(response_body=body)
