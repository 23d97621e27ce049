"""Room inventory the product owns: a hotel's rooms are this product's data. A resource holds at
most `capacity` reservations on any night; the resource row is locked while it counts, so
concurrent reservations cannot overbook."""

import secrets
from datetime import date, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .base import Reservation
from .models import InventoryReservation

Status = InventoryReservation.Status


def _counted(
    resource_id: int, idempotency_key: str, check_in: date, check_out: date
) -> tuple[Reservation | None, list[int]]:
    """In one query: this key's earlier answer, and how many reservations hold each night of
    the stay, counted by the database (a resource with many rooms has as many overlapping
    reservations: they are not brought back one by one).

    Plain SQL that PostgreSQL and SQLite both run: the ORM's form of it (a filtered Count per
    night) was costly to compile on every reservation (docs/performance.md)."""
    nights = [check_in + timedelta(days=n) for n in range((check_out - check_in).days)]
    day = connection.ops.adapt_datefield_value
    table = connection.ops.quote_name(InventoryReservation._meta.db_table)
    columns = [
        "MAX(CASE WHEN idempotency_key = %s THEN reference END)",
        "MAX(CASE WHEN idempotency_key = %s THEN status END)",
        # Only this key's row and reserved ones are read; this key's row, if any, is answered.
        *["SUM(CASE WHEN check_in <= %s AND check_out > %s THEN 1 ELSE 0 END)"] * len(nights),
    ]
    params: list[Any] = [idempotency_key, idempotency_key]
    for night in nights:
        params += [day(night), day(night)]
    params += [resource_id, idempotency_key, Status.RESERVED.value, day(check_out), day(check_in)]
    # Only the table's name and fixed SQL are formatted in; every value is a parameter.
    select = f"SELECT {', '.join(columns)} FROM {table}"  # noqa: S608  # nosec B608
    with connection.cursor() as cursor:
        cursor.execute(
            f"{select} WHERE resource_id = %s"
            " AND (idempotency_key = %s OR (status = %s AND check_in < %s AND check_out > %s))",
            params,
        )
        reference, status, *held = cursor.fetchone()
    earlier = Reservation(reference, status) if reference is not None else None
    return earlier, [count or 0 for count in held]


class OwnInventory:
    def reserve(
        self, *, idempotency_key: str, resource_code: str, check_in: date, check_out: date
    ) -> Reservation:
        """Reserve every night of the stay, or none: "unavailable" when any night is full."""
        from bookings.models import Resource

        with transaction.atomic():
            # NO KEY UPDATE: reservations of a resource wait for each other, but bookings being
            # inserted (their foreign key takes KEY SHARE on the resource) do not wait for them.
            resource = (
                Resource.objects.select_for_update(no_key=True).filter(code=resource_code).first()
            )
            if resource is None:
                found = InventoryReservation.objects.filter(idempotency_key=idempotency_key).first()
                return (
                    Reservation(found.reference, found.status)
                    if found
                    else Reservation("", Status.UNAVAILABLE)
                )
            earlier, held = _counted(resource.pk, idempotency_key, check_in, check_out)
            if earlier is not None:  # the key is unique: one row at most
                return earlier
            full = any(count >= resource.capacity for count in held)
            record = InventoryReservation.objects.create(
                idempotency_key=idempotency_key,
                reference=f"res_{secrets.token_hex(8)}",
                resource=resource,
                check_in=check_in,
                check_out=check_out,
                status=Status.UNAVAILABLE if full else Status.RESERVED,
            )
        return Reservation(record.reference, record.status)

    def release(self, *, idempotency_key: str, reservation_ref: str) -> Reservation:
        """Give the nights back; releasing an unknown or released reservation changes nothing."""
        with transaction.atomic():
            record = (
                InventoryReservation.objects.select_for_update()
                .filter(reference=reservation_ref)
                .first()
            )
            if record is None:
                return Reservation(reservation_ref, Status.RELEASED)
            if record.status == Status.RESERVED:
                record.status = Status.RELEASED
                record.release_key = idempotency_key
                record.released_at = timezone.now()
                record.save()
        return Reservation(record.reference, Status.RELEASED)

    def lookup(self, *, idempotency_key: str) -> Reservation | None:
        """The reservation made with this key, if any."""
        record = InventoryReservation.objects.filter(idempotency_key=idempotency_key).first()
        return Reservation(record.reference, record.status) if record else None
