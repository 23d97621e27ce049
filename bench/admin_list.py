"""Measure the bookings list page of the admin (queries and time per request) on the database of
DATABASE_URL, as an operator sees it: plain, stuck filter, search, dashboard. Creates a
superuser bench-admin if missing. bench/run.py's `admin` scenario runs it on a large table.

    DJANGO_SETTINGS_MODULE=config.settings.local DATABASE_URL=... \\
        .venv/bin/python bench/admin_list.py --runs 5 [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def measure(runs: int) -> dict[str, Any]:
    """Each page `runs` times: its queries and its median and longest time."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from bookings.models import Booking

    user = get_user_model().objects.filter(username="bench-admin").first()
    if user is None:
        user = get_user_model().objects.create_superuser("bench-admin", "", None)
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    changelist = reverse("admin:bookings_booking_changelist")
    sample = Booking.objects.order_by("created_at").values_list("reference", flat=True)[:1]
    pages = {
        "list": (changelist, {}),
        "list, stuck filter": (changelist, {"stuck": "yes"}),
        "list, requires attention": (changelist, {"attention": "yes"}),
        "list, search by reference": (changelist, {"q": sample[0] if sample else "BK-"}),
        "dashboard": (reverse("admin:bookings_booking_dashboard"), {}),
    }
    results: dict[str, Any] = {"bookings": Booking.objects.count()}
    for name, (url, params) in pages.items():
        timings, queries = [], 0
        for _ in range(runs):
            with CaptureQueriesContext(connection) as ctx:
                started = time.perf_counter()
                response = client.get(url, params)
                timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (name, response.status_code)
            queries = len(ctx.captured_queries)
        results[name] = {
            "queries": queries,
            "median_ms": round(statistics.median(timings), 1),
            "max_ms": round(max(timings), 1),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", action="store_true", help="Print JSON.")
    args = p.parse_args(argv)
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        p.error("set DJANGO_SETTINGS_MODULE (and DATABASE_URL): which database to measure")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    results = measure(args.runs)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"{results['bookings']} bookings, {args.runs} runs each")
    for name, r in results.items():
        if name != "bookings":
            print(
                f"  {name:28} {r['queries']:3} queries  median {r['median_ms']:8.1f} ms  "
                f"max {r['max_ms']:8.1f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
