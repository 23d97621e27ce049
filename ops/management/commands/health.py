"""Print what /health/ reports, one check a line, without going through HTTP; exit 1 when a
dependency is down (a warning, such as an open circuit, exits 0)."""

import asyncio

from django.core.management.base import BaseCommand

from ops.health import FULL_CHECKS, WEB_CHECKS, HealthView, only_warnings


class Command(BaseCommand):
    help = "Check the database, caches, broker, workers and circuit breakers, like /health/."

    def add_arguments(self, parser):
        parser.add_argument("--web", action="store_true", help="only what /health/web/ checks")

    def handle(self, *args, web: bool, **options):
        view = HealthView(checks=WEB_CHECKS if web else FULL_CHECKS)
        results = asyncio.run(self._run(view))
        for result in results:
            status = "OK" if result.error is None else str(result.error)
            self.stdout.write(f"{result.check!r}: {status}")
        if not only_warnings(results):
            raise SystemExit(1)

    async def _run(self, view: HealthView):
        return await asyncio.gather(*(check.get_result() for check in view.get_checks()))
