from bookings import selectors, services
from bookings.models import Booking

from ._operator import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Retry one booking's failed step (a booking that requires attention gets it again with a "
        "fresh retry budget) or its stuck step (its message is sent again now)."
    )
    action = "retry"

    def handle(self, *args, **o) -> None:
        booking = self.booking(o["reference"])
        target = selectors.retry_target(booking)
        applies = bool(target) and (
            booking.state in Booking.IN_FLIGHT or booking.state == Booking.State.REQUIRES_ATTENTION
        )
        data = {
            "reference": booking.reference,
            "state": booking.state,
            "dry_run": o["dry_run"],
            "step": target,
            "applies": applies,
        }
        if o["dry_run"]:
            verb = f"would retry {target}" if applies else "nothing to retry"
            self.report(o, data, f"{booking.reference} ({booking.state}): {verb}")
            return
        outcome = self.run_service(booking, o, services.booking_retry)
        booking.refresh_from_db()
        data.update(outcome=outcome, state=booking.state)
        self.report(o, data, f"{booking.reference}: {outcome}; now {booking.state}")
