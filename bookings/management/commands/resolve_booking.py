from functools import partial

from bookings import services
from bookings.models import Booking

from ._operator import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Resolve one booking that requires attention by hand, as completed or cancelled, after "
        "fixing things outside the system. Calls no provider. Resolving as cancelled, say what "
        "you did at the provider with --done-at-provider (recorded, and honoured by "
        "check_consistency)."
    )
    action = "resolve"

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--outcome", required=True, choices=["completed", "cancelled"])
        parser.add_argument(
            "--done-at-provider",
            default="",
            help=(
                "What you did at the provider for the undo steps that did not run, e.g. "
                '"voided by hand in the gateway\'s dashboard, ref ..." (--outcome cancelled).'
            ),
        )

    def handle(self, *args, **o) -> None:
        booking = self.booking(o["reference"])
        applies = booking.state == Booking.State.REQUIRES_ATTENTION
        pending = services.provider_undos_pending(booking) if applies else []
        data = {
            "reference": booking.reference,
            "state": booking.state,
            "dry_run": o["dry_run"],
            "outcome": o["outcome"],
            "applies": applies,
            "attention_reason": booking.attention_reason,
            "provider_undos_pending": pending,
            "done_at_provider": o["done_at_provider"],
        }
        undos = "; ".join(f"{u['provider']} {u['reference']} not {u['action']}" for u in pending)
        if o["dry_run"]:
            verb = (
                f"would be marked {o['outcome']} (no provider call)"
                if applies
                else "cannot be resolved by hand: only a booking that requires attention can"
            )
            if applies and undos and o["outcome"] == "cancelled":
                verb += f"; still at the providers: {undos} (say what you did: --done-at-provider)"
            self.report(o, data, f"{booking.reference} ({booking.state}) {verb}")
            return
        self.run_service(
            booking,
            o,
            partial(
                services.booking_resolve,
                outcome=o["outcome"],
                done_at_provider=o["done_at_provider"],
            ),
        )
        booking.refresh_from_db()
        data["state"] = booking.state
        recorded = (
            f"; recorded at the providers: {undos}: {o['done_at_provider']}"
            if undos and o["done_at_provider"] and o["outcome"] == "cancelled"
            else ""
        )
        self.report(
            o, data, f"{booking.reference}: resolved by hand; now {booking.state}{recorded}"
        )
