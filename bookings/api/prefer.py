"""`Prefer: wait=<seconds>` (RFC 7240): the client would rather wait for the booking to settle
than poll. The wait polls the booking's state with short autocommit queries: no transaction and
no row lock is held while it sleeps, and the saga runs in the workers as usual."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from bookings.models import Booking


def requested_wait(header: str | None) -> int | None:
    """The `wait` preference in seconds, cut to API_PREFER_WAIT_MAX; None if absent or not a
    number (RFC 7240 section 2: a preference that cannot be understood is ignored)."""
    if not header:
        return None
    for preference in header.split(","):
        token = preference.split(";", 1)[0].strip()
        name, _, value = token.partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if value.isascii() and value.isdigit() and len(value) <= 10:
            return min(int(value), settings.API_PREFER_WAIT_MAX)
        return None
    return None


def wait_until_settled(booking_id: Any, seconds: float) -> None:
    """Return when the booking is completed, cancelled or requires attention, or after
    `seconds`."""
    deadline = time.monotonic() + seconds
    pause = 0.05
    while True:
        state = Booking.objects.filter(pk=booking_id).values_list("state", flat=True).first()
        remaining = deadline - time.monotonic()
        if state in Booking.TERMINAL or state is None or remaining <= 0:
            return
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.5)
