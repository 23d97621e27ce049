from functools import partial

from bookings import services
from bookings.models import Booking

from ._operator import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Resolve one booking that requires attention by hand, as completed or cancelled, after "
        "fixing things outside the system. Calls no provider."
    )
    action = "resolve"

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--outcome", required=True, choices=["completed", "cancelled"])

    def handle(self, *args, **o) -> None:
        booking = self.booking(o["reference"])
        applies = booking.state == Booking.State.REQUIRES_ATTENTION
        data = {
            "reference": booking.reference,
            "state": booking.state,
            "dry_run": o["dry_run"],
            "outcome": o["outcome"],
            "applies": applies,
            "attention_reason": booking.attention_reason,
        }
        if o["dry_run"]:
            verb = (
                f"would be marked {o['outcome']} (no provider call)"
                if applies
                else "cannot be resolved by hand: only a booking that requires attention can"
            )
            self.report(o, data, f"{booking.reference} ({booking.state}) {verb}")
            return
        self.run_service(booking, o, partial(services.booking_resolve, outcome=o["outcome"]))
        booking.refresh_from_db()
        data["state"] = booking.state
        self.report(o, data, f"{booking.reference}: resolved by hand; now {booking.state}")
