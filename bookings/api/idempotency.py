"""Idempotency keys for `POST /api/v1/bookings/` (the IETF draft "The Idempotency-Key HTTP Header
Field"): a client that retries a create with the same key gets the first answer again, never a
second booking.

The record is inserted in the same transaction as the booking, under a unique (client, key)
constraint. A concurrent request with the same key blocks on that insert until the first one
commits (PostgreSQL waits on the unique index; SQLite's IMMEDIATE transactions serialize at
BEGIN), then finds the committed record and replays it. A create that fails validation rolls the
record back with it, so the client may correct the body and retry with the same key."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from bookings.errors import ApplicationError
from bookings.models import Booking, IdempotencyKey

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
# Visible ASCII, as the draft recommends for a UUID or a random string.
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")


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


def create_once(
    *,
    owner: Any,
    key: str,
    request_fingerprint: str,
    create: Callable[[], tuple[int, dict[str, Any], Booking]],
) -> Result:
    """Run `create` (which returns status, body and booking) once per (owner, key) within the
    key's lifetime; a later call with the same body replays the stored answer, with another
    body it is a 422. `create` runs inside this transaction: its messages leave on commit."""
    now = timezone.now()
    with transaction.atomic():
        # An expired record no longer counts: the key starts afresh.
        IdempotencyKey.objects.filter(owner=owner, key=key, expires_at__lte=now).delete()
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    owner=owner,
                    key=key,
                    fingerprint=request_fingerprint,
                    response_status=0,  # set below, in the same transaction: never seen as 0
                    response_body={},
                    expires_at=now + timedelta(seconds=settings.API_IDEMPOTENCY_TTL),
                )
        except IntegrityError:
            stored = IdempotencyKey.objects.get(owner=owner, key=key)
            if stored.fingerprint != request_fingerprint:
                raise ApplicationError(
                    f"This {HEADER} was used with a different request body; use a new key "
                    "for a new booking.",
                    status=422,
                    code="idempotency_key_reused",
                )
            return Result(stored.response_status, stored.response_body, stored.booking_id, True)
        status, body, booking = create()
        record.response_status, record.response_body, record.booking = status, body, booking
        record.save(update_fields=["response_status", "response_body", "booking"])
    _purge_expired(owner, now)
    return Result(status, body, booking.pk, False)


def update_response(*, owner: Any, key: str, body: dict[str, Any]) -> None:
    """Store the body finally sent (after a `Prefer: wait`), so a replay matches it."""
    IdempotencyKey.objects.filter(owner=owner, key=key).update(response_body=body)


def _purge_expired(owner: Any, now: Any) -> None:
    # Best effort and outside the create's transaction: a client's expired keys go when it next
    # uses one, so the table holds about one day of keys per active client.
    try:
        # One DELETE in autocommit: nothing refers to these rows and no signal listens, so
        # QuerySet.delete()'s collector and its BEGIN/COMMIT around the statement add nothing.
        expired = IdempotencyKey.objects.filter(owner=owner, expires_at__lte=now)
        expired._raw_delete(expired.db)
    except DatabaseError:  # e.g. a deadlock with a concurrent purge; the next one will do
        log.warning("could not purge expired idempotency keys of %s", owner, exc_info=True)
