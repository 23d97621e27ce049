import json

from django.core.management.base import BaseCommand

from sagas import recovery
from sagas.models import SagaStep


class Command(BaseCommand):
    help = (
        "Send again every saga step whose lease ran out without an outcome (message lost, "
        "worker died). The same code the periodic sweeper (Celery beat) runs."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="List, change nothing.")
        parser.add_argument("--limit", type=int, default=None, help="At most this many steps.")
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args, **options) -> None:
        report = recovery.sweep(limit=options["limit"], dry_run=options["dry_run"])
        # Which saga and step each id is, so on-call can tell what was (or would be) sent.
        steps = list(
            SagaStep.objects.filter(pk__in=report.redispatched + report.gave_up)
            .order_by("id")
            .values("id", "saga_id", "name", "direction", "attempt", "dispatch_count")
        )
        if options["json"]:
            # default=str writes each saga id (a UUID) as text
            self.stdout.write(
                json.dumps(
                    {"dry_run": options["dry_run"], **report.as_dict(), "steps": steps},
                    default=str,
                )
            )
            return
        verb = "would send again" if options["dry_run"] else "sent again"
        self.stdout.write(f"{verb}: {len(report.redispatched)} step(s) {report.redispatched}")
        for step in steps:
            self.stdout.write(
                f"  step {step['id']}: saga {step['saga_id']} {step['name']} ({step['direction']})"
                f" attempt {step['attempt']}, sent {step['dispatch_count']} time(s)"
            )
        if report.gave_up:
            self.stdout.write(f"gave up (parked for an operator): {report.gave_up}")
