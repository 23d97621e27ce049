import json

from django.core.management.base import BaseCommand

from sagas import recovery


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
        if options["json"]:
            self.stdout.write(json.dumps({"dry_run": options["dry_run"], **report.as_dict()}))
            return
        verb = "would send again" if options["dry_run"] else "sent again"
        self.stdout.write(f"{verb}: {len(report.redispatched)} step(s) {report.redispatched}")
        if report.gave_up:
            self.stdout.write(f"gave up (parked for an operator): {report.gave_up}")
