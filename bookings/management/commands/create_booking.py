import json
import time
from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError

from bookings.errors import ApplicationError
from bookings.models import Booking
from bookings.services import booking_create


class Command(BaseCommand):
    help = (
        "Create a booking and start its saga (the same service the API calls). Sandbox magic "
        "values: --token tok_declined | tok_flaky | tok_void_fails; --email x@fraud.test or "
        "bounce@...; --resource sold-out."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--resource", default="garden-room")
        parser.add_argument("--check-in", type=date.fromisoformat, default=None)
        parser.add_argument("--nights", type=int, default=2)
        parser.add_argument("--name", default="Ada Lovelace")
        parser.add_argument("--email", default="ada@example.com")
        parser.add_argument("--token", default="tok_visa")
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            help="Seconds to wait for an end state (needs a worker).",
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **o) -> None:
        check_in = o["check_in"] or date.today() + timedelta(days=7)
        try:
            booking = booking_create(
                resource_code=o["resource"],
                check_in=check_in,
                check_out=check_in + timedelta(days=o["nights"]),
                guest_name=o["name"],
                guest_email=o["email"],
                payment_token=o["token"],
            )
        except ApplicationError as exc:
            raise CommandError(f"{exc.message} {exc.extra}") from exc
        deadline = time.monotonic() + o["wait"]
        while booking.state not in Booking.TERMINAL and time.monotonic() < deadline:
            time.sleep(0.2)
            booking = Booking.objects.get(pk=booking.pk)
        if o["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "id": str(booking.pk),
                        "reference": booking.reference,
                        "state": booking.state,
                        "cancellation_reason": booking.cancellation_reason,
                    }
                )
            )
        else:
            self.stdout.write(
                f"{booking.reference} {booking.state} {booking.cancellation_reason}".rstrip()
            )
