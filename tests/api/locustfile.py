"""Load for the client API's create and detail (not part of the pytest suite). Run it against a
server started like production, e.g. (see docs/production.md, "Deployment"):

    API_TOKEN=<token> .venv/bin/locust -f tests/api/locustfile.py --headless \
        -H http://127.0.0.1:8791 -u 10 -r 10 -t 60s --csv /tmp/api-load

Each simulated client creates bookings (each with its own Idempotency-Key) and reads them back,
three reads per create, as a client polling its booking would. It waits LOCUST_WAIT seconds
("min,max", default 0.05,0.2: close to saturation) between requests. FastHttpUser keeps the load
generator's own CPU low: it shares the machine with the server it measures.

locust starts users in batches (with -r 25, 25 users in the same millisecond, each second), and a
new user's first request goes out at once: without a first pause, each batch arrives as one burst
of 25 creates. The second batch's burst falls after --reset-stats: 25 of a 40 s run's 500
creates, 5 %, enough to set its 95th percentile. Each client therefore first waits a random part
of its interval, as clients that do not start together would."""

import os
import random
import uuid
from datetime import date, timedelta

import gevent
from locust import FastHttpUser, between, task

WAIT = [float(x) for x in os.environ.get("LOCUST_WAIT", "0.05,0.2").split(",")]


class BookingClient(FastHttpUser):
    wait_time = between(*WAIT)
    default_headers = {
        "Authorization": f"Token {os.environ.get('API_TOKEN', '')}",
        # gunicorn's sync workers close every connection after its response: say so, so that
        # the client opens a new one instead of first trying the closed one.
        "Connection": "close",
    }

    def on_start(self) -> None:
        self.ids: list[str] = []
        gevent.sleep(random.uniform(0, WAIT[1]))

    @task(1)
    def create(self) -> None:
        check_in = date.today() + timedelta(days=random.randint(1, 300))
        response = self.client.post(
            "/api/v1/bookings/",
            json={
                "resource": "garden-room",
                "check_in": check_in.isoformat(),
                "check_out": (check_in + timedelta(days=2)).isoformat(),
                "guest_name": "Load Tester",
                "guest_email": "load@example.com",
                "payment_token": "tok_visa",
            },
            headers={"Idempotency-Key": str(uuid.uuid4())},
            name="POST /api/v1/bookings/",
        )
        if response.status_code == 201:
            self.ids.append(response.json()["id"])

    @task(3)
    def detail(self) -> None:
        if not self.ids:  # a client's first request is a create, at its own pace
            self.create()
            return
        self.client.get(
            f"/api/v1/bookings/{random.choice(self.ids)}/", name="GET /api/v1/bookings/{id}/"
        )
