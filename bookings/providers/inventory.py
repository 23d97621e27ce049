"""Room inventory the product owns: a hotel's rooms are this product's data. A resource holds at
most `capacity` reservations on any night; the resource row is locked while it counts, so
concurrent reservations cannot overbook."""

import secrets
from collections import Counter
from datetime import date, timedelta

from django.db import transaction
from django.db.models import Q
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
            # One query for both: this key's earlier answer, and the nights already held.
            rows = (
                InventoryReservation.objects.filter(resource=resource)
                .filter(
                    Q(idempotency_key=idempotency_key)
                    | Q(status=Status.RESERVED, check_in__lt=check_out, check_out__gt=check_in)
                )
                .values_list("idempotency_key", "reference", "status", "check_in", "check_out")
            )
            per_night: Counter[date] = Counter()
            for key, reference, status, start, end in rows:
                if key == idempotency_key:
                    return Reservation(reference, status)
                for n in range((end - start).days):
                    per_night[start + timedelta(days=n)] += 1
            nights = [check_in + timedelta(days=n) for n in range((check_out - check_in).days)]
            full = any(per_night[night] >= resource.capacity for night in nights)
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
