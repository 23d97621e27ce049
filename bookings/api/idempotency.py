"""Idempotency keys for `POST /api/v1/bookings/` (the IETF draft "The Idempotency-Key HTTP Header
Field"): a client that retries a create with the same key gets the first answer again, never a
second booking.

The key's record, holding the answer, is written together with the booking, its saga, its first
attempt and its booking.created event (all or nothing: one statement on PostgreSQL when no
transaction is open, see engine.start's `also`), under a unique (client, key) constraint: the
answer is the booking's representation as written, known before the write. A concurrent request
with the same key waits on the unique index until the first one's write ends, then fails to
insert (nothing of it is written), reads the record and replays its answer. A body that fails
validation writes nothing, so the client may correct it and retry with the same key. An expired
record is deleted when its key comes back, and the create tried again; the others are deleted
off the request path, by a periodic task (bookings/tasks.py).
"""

from __future__ import annotations

import hashlib
import json
import re
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
# A record without its answer: written by versions before 2026-12-06, which stored the answer by
# a second statement after the booking's write (a request that died between the two left it).
PENDING = 0
CREATED = 201


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
    *, owner: Any, key: str, request_fingerprint: str, booking: Booking, body: dict[str, Any]
) -> IdempotencyKey:
    """The key's record for `booking` with its answer `body` (not saved yet), to be written with
    the booking."""
    now = timezone.now()
    return IdempotencyKey(
        owner=owner,
        key=key,
        fingerprint=request_fingerprint,
        response_status=CREATED,
        response_body=body,
        booking=booking,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.API_IDEMPOTENCY_TTL),
    )


def create_once(
    *,
    owner: Any,
    key: str,
    request_fingerprint: str,
    create: Callable[
        [Callable[[Booking, dict[str, Any]], list[IdempotencyKey]]],
        tuple[int, dict[str, Any], Booking],
    ],
    represent: Callable[[Any], dict[str, Any]],
) -> Result:
    """Run `create` once per (owner, key) within the key's lifetime. `create(also)` makes the
    booking with the rows `also(booking, body)` returns (the key's record, holding the answer
    `body`) written together with it, and returns status, body and booking. A later call with
    the same body replays the stored answer; with another body it is a 422. `represent` shows a
    booking by id, for a record an earlier version left without its answer."""

    def also(booking: Booking, body: dict[str, Any]) -> list[IdempotencyKey]:
        return [
            new_record(
                owner=owner,
                key=key,
                request_fingerprint=request_fingerprint,
                booking=booking,
                body=body,
            )
        ]

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
    if stored.response_status == PENDING:
        # Left by an earlier version whose request died between the booking's write and its
        # answer's: answer from the booking (the one the key made), and keep that answer.
        body = represent(stored.booking_id)
        IdempotencyKey.objects.filter(pk=stored.pk).update(
            response_status=CREATED, response_body=body
        )
        return Result(CREATED, body, stored.booking_id, True)
    return Result(stored.response_status, stored.response_body, stored.booking_id, True)


def update_response(*, owner: Any, key: str, body: dict[str, Any]) -> None:
    """Store the body finally sent (after a `Prefer: wait`), so a replay matches it."""
    IdempotencyKey.objects.filter(owner=owner, key=key).update(response_body=body)
