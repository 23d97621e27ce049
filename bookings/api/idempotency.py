"""Idempotency keys for `POST /api/v1/bookings/` (the IETF draft "The Idempotency-Key HTTP Header
Field"): a client that retries a create with the same key gets the first answer again, never a
second booking.

The record is inserted in the same transaction as the booking, under a unique (client, key)
constraint, by one INSERT ... ON CONFLICT statement that also takes over the key's expired record.
A concurrent request with the same key blocks on that insert until the first one
commits (PostgreSQL waits on the unique index; SQLite's IMMEDIATE transactions serialize at
BEGIN), then finds the committed record and replays it. A create that fails validation rolls the
record back with it, so the client may correct the body and retry with the same key. Expired
records are deleted off the request path, by a periodic task (bookings/tasks.py)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from bookings.errors import ApplicationError
from bookings.models import Booking, IdempotencyKey

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
        record_id = _claim(owner, key, request_fingerprint, now)
        if record_id is None:
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
        IdempotencyKey.objects.filter(pk=record_id).update(
            response_status=status, response_body=body, booking=booking
        )
    return Result(status, body, booking.pk, False)


@cache
def _fields() -> dict[str, Field]:
    """Every column of the record but its id: an expired record taken over keeps none of its
    old values (a column added to the model is written too, or the claim fails loudly)."""
    return {f.name: f for f in IdempotencyKey._meta.concrete_fields if not f.primary_key}


def _column(name: str) -> str:
    field = IdempotencyKey._meta.pk if name == "id" else _fields()[name]
    assert field is not None and field.column, name
    return connection.ops.quote_name(field.column)


@cache
def _claim_sql() -> str:
    """INSERT the record; on the (owner, key) conflict, overwrite it only if it has expired; the
    id when a row was written. Names only, from the model (the values are parameters)."""
    table = connection.ops.quote_name(IdempotencyKey._meta.db_table)
    columns = [_column(name) for name in _fields()]
    owner, key = _column("owner"), _column("key")
    names, marks = ", ".join(columns), ", ".join(["%s"] * len(columns))
    overwrite = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in (owner, key))
    insert = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608  # nosec B608
    expired = f"{table}.{_column('expires_at')} <= %s"
    upsert = f"{insert} ON CONFLICT ({owner}, {key}) DO UPDATE SET {overwrite}"  # nosec B608
    return f"{upsert} WHERE {expired} RETURNING {_column('id')}"


def _claim(owner: Any, key: str, request_fingerprint: str, now: datetime) -> int | None:
    """Insert the (owner, key) record, or take over the key's expired record (it no longer
    counts: the key starts afresh), in one statement; the record's id, or None when a live record
    holds the key. A concurrent request's insert of the same key is waited for on the unique
    index, as a plain INSERT would; its record then holds the key or, rolled back, does not."""
    values = {
        "owner": owner.pk,
        "key": key,
        "fingerprint": request_fingerprint,
        "response_status": 0,  # set below, in the same transaction: never seen as 0
        "response_body": {},
        "booking": None,
        "created_at": now,
        "expires_at": now + timedelta(seconds=settings.API_IDEMPOTENCY_TTL),
    }
    fields = _fields()
    params = [field.get_db_prep_save(values[name], connection) for name, field in fields.items()]
    params.append(fields["expires_at"].get_db_prep_save(now, connection))
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(), params)
        row = cursor.fetchone()
    return None if row is None else row[0]


def update_response(*, owner: Any, key: str, body: dict[str, Any]) -> None:
    """Store the body finally sent (after a `Prefer: wait`), so a replay matches it."""
    IdempotencyKey.objects.filter(owner=owner, key=key).update(response_body=body)
