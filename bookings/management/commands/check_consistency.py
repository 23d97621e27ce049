import json

from django.core.management.base import BaseCommand, CommandError

from bookings.consistency import consistency_report


class Command(BaseCommand):
    help = (
        "Check the product's promises over every booking: none stuck, no effect twice, no "
        "cancelled booking holding money or a room, no lost attempt record, no overbooked "
        "night, saga and booking agree. Exits non-zero when any is broken."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args, **options) -> None:
        report = consistency_report()
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(f"bookings: {report.bookings}  states: {dict(report.states)}")
            for name in report.PROBLEMS:
                found = getattr(report, name)
                self.stdout.write(f"{name}: {len(found)}" + (f"  {found[:10]}" if found else ""))
        if not report.ok:
            raise CommandError("consistency check failed")
