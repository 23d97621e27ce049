"""Load test of the client API (locust): each simulated client creates bookings with its own
token (POST /api/v1/bookings/) and follows them (GET /api/v1/bookings/{id}/), as a website
would. Run through loadtest/run.py, which starts gunicorn and real workers first.

Fails the run (exit code 1) on any request error, or when the 95th percentile of response time
over all requests is above LOAD_P95_MS.
"""

from __future__ import annotations

import json
import os
import random
from datetime import date, timedelta
from itertools import count

from locust import HttpUser, between, events, task

TOKENS: list[str] = json.loads(os.environ.get("LOAD_TOKENS", "[]"))
RESOURCE = os.environ.get("LOAD_RESOURCE", "load-room")
P95_BOUND_MS = float(os.environ.get("LOAD_P95_MS", "500"))
_user_numbers = count()


class ApiClient(HttpUser):
    wait_time = between(0.2, 0.8)

    def on_start(self) -> None:
        token = TOKENS[next(_user_numbers) % len(TOKENS)]
        self.client.headers["Authorization"] = f"Token {token}"
        self.booking_ids: list[str] = []

    @task(1)
    def create_booking(self) -> None:
        check_in = date.today() + timedelta(days=random.randint(1, 300))
        body = {
            "resource": RESOURCE,
            "check_in": check_in.isoformat(),
            "check_out": (check_in + timedelta(days=random.randint(1, 3))).isoformat(),
            "guest_name": "Load Tester",
            "guest_email": f"load{random.randint(1, 10**9)}@example.com",
            "payment_token": "tok_visa",
        }
        with self.client.post(
            "/api/v1/bookings/", json=body, name="POST /api/v1/bookings/", catch_response=True
        ) as response:
            if response.status_code not in (201, 202):
                response.failure(f"create answered {response.status_code}: {response.text[:200]}")
                return
            self.booking_ids.append(response.json()["id"])

    @task(3)
    def follow_booking(self) -> None:
        if not self.booking_ids:
            return
        booking_id = random.choice(self.booking_ids[-20:])
        self.client.get(f"/api/v1/bookings/{booking_id}/", name="GET /api/v1/bookings/{id}/")


@events.quitting.add_listener
def _enforce_bounds(environment, **_kwargs) -> None:
    """Turn the figures into CI's verdict."""
    total = environment.stats.total
    p95 = total.get_response_time_percentile(0.95) or 0
    verdict = []
    if total.num_requests == 0:
        verdict.append("no request was made")
    if total.num_failures:
        verdict.append(f"{total.num_failures} request(s) failed")
    if p95 > P95_BOUND_MS:
        verdict.append(f"p95 {p95:.0f} ms is above the bound of {P95_BOUND_MS:.0f} ms")
    print(
        f"load test: {total.num_requests} requests, {total.num_failures} failures, "
        f"{total.total_rps:.1f} req/s, median {total.median_response_time:.0f} ms, "
        f"p95 {p95:.0f} ms, p99 {total.get_response_time_percentile(0.99) or 0:.0f} ms, "
        f"max {total.max_response_time:.0f} ms (bound: p95 <= {P95_BOUND_MS:.0f} ms)"
    )
    if verdict:
        print("load test FAILED: " + "; ".join(verdict))
        environment.process_exit_code = 1
    else:
        environment.process_exit_code = 0
