"""Room inventory the product owns: a hotel's rooms are this product's data. A resource holds at
most `capacity` reservations on any night; the resource row is locked while it counts, so
concurrent reservations cannot overbook."""

import secrets
from datetime import date, timedelta

from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from .base import Reservation
from .models import InventoryReservation

Status = InventoryReservation.Status


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
            # One query for both: this key's earlier answer, and how many reservations hold
            # each night of the stay, counted by the database (a resource with many rooms has
            # as many overlapping reservations: they are not brought back one by one).
            nights = [check_in + timedelta(days=n) for n in range((check_out - check_in).days)]
            mine = Q(idempotency_key=idempotency_key)
            held = {
                f"night_{n}": Count(
                    "pk", filter=Q(status=Status.RESERVED, check_in__lte=night, check_out__gt=night)
                )
                for n, night in enumerate(nights)
            }
            counted = (
                InventoryReservation.objects.filter(resource=resource)
                .filter(
                    mine | Q(status=Status.RESERVED, check_in__lt=check_out, check_out__gt=check_in)
                )
                .aggregate(
                    earlier_reference=Max("reference", filter=mine),
                    earlier_status=Max("status", filter=mine),
                    **held,
                )
            )
            if counted["earlier_reference"] is not None:  # the key is unique: one row at most
                return Reservation(counted["earlier_reference"], counted["earlier_status"])
            full = any(counted[name] >= resource.capacity for name in held)
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
