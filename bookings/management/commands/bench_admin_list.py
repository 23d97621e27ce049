import json
import statistics
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bookings.models import Booking


class Command(BaseCommand):
    help = (
        "Measure the bookings list page of the admin (queries and time per request) on the "
        "current database, as an operator sees it: plain, stuck filter, search, dashboard. Use "
        "with seed_bulk_bookings for a large table. Creates a superuser bench-admin if missing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--runs", type=int, default=5)
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args, **o) -> None:
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
            for _ in range(o["runs"]):
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
        if o["json"]:
            self.stdout.write(json.dumps(results))
            return
        self.stdout.write(f"{results['bookings']} bookings, {o['runs']} runs each")
        for name in pages:
            r = results[name]
            self.stdout.write(
                f"  {name:28} {r['queries']:3} queries  median {r['median_ms']:8.1f} ms  "
                f"max {r['max_ms']:8.1f} ms"
            )
