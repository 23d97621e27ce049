"""What the on-call commands that change one booking share: find it by reference, say who acts
(recorded in the saga history), print text or JSON, and turn a service refusal into an error
with a clear message (exit status 1)."""

from __future__ import annotations

import getpass
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from bookings import selectors
from bookings.errors import ApplicationError
from bookings.models import Booking


class OperatorCommand(BaseCommand):
    action = ""  # shown in messages

    def add_arguments(self, parser) -> None:
        parser.add_argument("reference", help="Booking reference, e.g. BK-7Q2M9XKD.")
        parser.add_argument("--reason", default="", help="Why (required unless --dry-run).")
        parser.add_argument(
            "--actor",
            default=None,
            help="Who acts, recorded in the saga history (default: cli:<your login>).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Say what would happen.")
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def booking(self, reference: str) -> Booking:
        booking = selectors.booking_by_reference(reference)
        if booking is None:
            raise CommandError(f"No booking {reference}.")
        return booking

    def actor(self, options: dict) -> str:
        return options["actor"] or f"cli:{getpass.getuser()}"

    def run_service(self, booking: Booking, options: dict, call) -> Any:
        """Call the service with the state the booking was read in, so that a booking that
        moved in between is refused rather than acted on twice."""
        if not options["reason"].strip():
            raise CommandError("--reason is required: it is recorded with your name.")
        try:
            return call(
                booking=booking,
                actor=self.actor(options),
                reason=options["reason"],
                expected_state=booking.state,
            )
        except ApplicationError as exc:
            raise CommandError(f"{self.action} refused: {exc.message}") from exc

    def report(self, options: dict, data: dict[str, Any], text: str) -> None:
        self.stdout.write(json.dumps(data, default=str) if options["json"] else text)
