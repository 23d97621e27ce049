from bookings import selectors, services

from ._operator import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Compensate one booking now: undo every completed step, latest first. --dry-run lists "
        "the compensations that would run, in order, with their idempotency keys and the "
        "provider references they undo."
    )
    action = "compensate"

    def handle(self, *args, **o) -> None:
        booking = self.booking(o["reference"])
        plan = selectors.compensation_plan(booking)
        data = {
            "reference": booking.reference,
            "state": booking.state,
            "dry_run": o["dry_run"],
            "compensations": plan,
        }
        lines = [
            f"  {i}. undo {c['step']}  key={c['idempotency_key']}  "
            f"{c['reference_field'] or 'reference'}={c['reference'] or '-'}"
            for i, c in enumerate(plan, 1)
        ] or ["  (nothing to undo)"]
        if o["dry_run"]:
            head = f"{booking.reference} ({booking.state}): would run, in this order:"
            self.report(o, data, "\n".join([head, *lines]))
            return
        outcome = self.run_service(booking, o, services.booking_compensate)
        booking.refresh_from_db()
        data.update(outcome=outcome, state=booking.state)
        head = f"{booking.reference}: compensation {outcome}; now {booking.state}. Undoing:"
        self.report(o, data, "\n".join([head, *lines]))
