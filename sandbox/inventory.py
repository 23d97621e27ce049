"""The sandbox inventory: the product's own inventory (a resource's capacity is its only magic:
the demo's sold-out room is full every night), plus the outage switch."""

from __future__ import annotations

from datetime import date

from bookings.providers.base import Reservation
from bookings.providers.inventory import OwnInventory

from . import outage


class SandboxInventory(OwnInventory):
    def reserve(
        self, *, idempotency_key: str, resource_code: str, check_in: date, check_out: date
    ) -> Reservation:
        """Reserve like the product's inventory, unless the sandbox is taken down."""
        outage.raise_if_down("inventory")
        return super().reserve(
            idempotency_key=idempotency_key,
            resource_code=resource_code,
            check_in=check_in,
            check_out=check_out,
        )

    def release(self, *, idempotency_key: str, reservation_ref: str) -> Reservation:
        """Release like the product's inventory, unless the sandbox is taken down."""
        outage.raise_if_down("inventory")
        return super().release(idempotency_key=idempotency_key, reservation_ref=reservation_ref)
