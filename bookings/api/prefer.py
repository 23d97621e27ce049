"""`Prefer: wait=<seconds>` (RFC 7240): the client would rather wait for the booking to settle
than poll. The wait polls the booking's state with short autocommit queries: no transaction and
no row lock is held while it sleeps, and the saga runs in the workers as usual.

A waiting request holds one of its web process's threads, so waits are bounded twice: each
lasts at most API_PREFER_WAIT_MAX seconds (config/gunicorn.py refuses to start unless that is
well below the worker timeout), and at most API_PREFER_WAIT_CONCURRENCY requests of a process
wait at once (gunicorn's config sets it to half the worker's threads). A request beyond that is
answered at once, without `Preference-Applied`: RFC 7240 lets a server ignore a preference, and
the other half of the threads stay free for everyone else's requests.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection

from bookings.models import Booking
from ops.unavailable import is_unavailable


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


@functools.cache
def _slots(limit: int) -> threading.BoundedSemaphore:
    # The per-process count of waiting requests: a limit on this process's threads is state of
    # this process by nature, created once per limit (tests change the setting).
    return threading.BoundedSemaphore(limit)


@contextmanager
def wait_slot() -> Iterator[bool]:
    """Take one of the process's API_PREFER_WAIT_CONCURRENCY wait slots without blocking:
    yields whether one was free (the request may wait) and gives it back afterwards."""
    limit = settings.API_PREFER_WAIT_CONCURRENCY
    slots = _slots(limit) if limit > 0 else None
    granted = slots is not None and slots.acquire(blocking=False)
    try:
        yield granted
    finally:
        if granted and slots is not None:
            slots.release()


def wait_until_settled(booking_id: Any, seconds: float) -> bool:
    """Return when the booking is completed, cancelled or requires attention, or after
    `seconds`: True. False when the database failed meanwhile (the wait stops; the caller
    answers with what it has, the booking it created is committed already)."""
    deadline = time.monotonic() + seconds
    pause = 0.05
    while True:
        try:
            state = Booking.objects.filter(pk=booking_id).values_list("state", flat=True).first()
        except Exception as exc:
            if is_unavailable(exc):
                return False
            raise
        remaining = deadline - time.monotonic()
        if state in Booking.TERMINAL or state is None or remaining <= 0:
            return True
        _lend_connection_back()
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.5)


def _lend_connection_back() -> None:
    """A pooled connection goes back to the pool while the request sleeps, so that waiting
    requests do not keep connections the process's other requests need. A connection of its
    own (no pool) is kept: reopening it would cost more than the query."""
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()
