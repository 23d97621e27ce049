import json

from django.core.management.base import BaseCommand

from bookings import selectors


class Command(BaseCommand):
    help = (
        "List the bookings whose saga is not moving on by itself, oldest first, and say why for "
        "each: worker lost or lease expired, message lost, compensation failed, waiting for an "
        "operator; with the command that fixes it. A booking waiting for a retry moves on by "
        "itself and is not listed. Changes nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--limit", type=int, default=200, help="At most this many.")
        parser.add_argument(
            "--reason", choices=sorted(selectors.REASONS), help="Only this kind of problem."
        )
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args, **o) -> None:
        found = selectors.explain_stuck(limit=o["limit"])
        if o["reason"]:
            found = [s for s in found if s.reason == o["reason"]]
        if o["json"]:
            self.stdout.write(json.dumps([s.as_dict() for s in found]))
            return
        if not found:
            self.stdout.write("no stuck saga")
            return
        for s in found:
            self.stdout.write(
                f"{s.reference}  {s.booking_state}  since {s.since:%Y-%m-%d %H:%M:%S}\n"
                f"    why: {selectors.REASONS[s.reason]} ({s.reason}): {s.detail}\n"
                f"    fix: {s.fix}"
            )
        self.stdout.write(f"{len(found)} stuck saga(s)")
