"""The client side of tests/faults/test_restarts.py, run as a process of its own so that every
connection it holds (database, broker, caches) points where its environment says: at the
throwaway server the test restarts, never at the machine's.

    python -m tests.faults.restart_scenario   (DJANGO_SETTINGS_MODULE, DATABASE_URL, ... set)

It books a mix that keeps sagas queued, running and waiting for retries, waits for the first to
finish and writes `READY`; the test restarts the server and writes a line back; then it settles
the bookings with the sweeper's help, checks the invariants and writes `RESULT <json>`: the
count of each (state, cancellation reason) and the first invariant broken, if any.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

BOOKINGS = 30


def main() -> int:
    import django

    django.setup()

    from django.db import connection

    from bookings.models import Booking
    from tests.factories import ResourceFactory
    from tests.helpers import assert_invariants, book, settle_with_sweeper, wait_for

    room = ResourceFactory(code="garden-room", capacity=BOOKINGS)
    sold_out = ResourceFactory(code="sold-out", capacity=0)
    bookings = []
    for i in range(BOOKINGS):
        token = ("tok_visa", "tok_flaky", "tok_void_flaky")[i % 3]
        resource = sold_out if i % 5 == 4 else room
        bookings.append(book(resource, token=token, email=f"g{i}@example.com"))
    ids = [b.pk for b in bookings]

    def some_done() -> bool:
        done = Booking.objects.filter(pk__in=ids, state__in=Booking.TERMINAL).count()
        return done >= 3

    wait_for(some_done, timeout=60, what="the first sagas to finish")
    print("READY", flush=True)
    sys.stdin.readline()  # the test restarted the server
    connection.close()  # a restarted database ended this process's session
    time.sleep(1)
    settled = settle_with_sweeper(bookings, timeout=240)
    states = Counter((b.state, b.cancellation_reason) for b in settled)
    try:
        assert_invariants(bookings)
        broken = None
    except AssertionError as exc:
        broken = str(exc) or repr(exc)
    result = {"states": [[s, r, n] for (s, r), n in sorted(states.items())], "broken": broken}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
