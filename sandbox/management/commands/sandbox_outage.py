"""Take a sandbox provider down for a while (every call fails transiently), to watch the
circuit breaker open, bookings wait, and everything finish once it is back."""

from django.core.management.base import BaseCommand, CommandError

from bookings.providers.base import KINDS
from sandbox import outage


class Command(BaseCommand):
    help = "Make a sandbox provider fail every call for --seconds (or end an outage: --end)."

    def add_arguments(self, parser):
        parser.add_argument("--provider", required=True, choices=KINDS)
        parser.add_argument("--seconds", type=float, default=60.0)
        parser.add_argument("--end", action="store_true", help="bring the provider back now")

    def handle(self, *args, provider: str, seconds: float, end: bool, **options):
        if end:
            outage.bring_up(provider)
            self.stdout.write(f"{provider} sandbox is up")
            return
        if seconds <= 0:
            raise CommandError("--seconds must be positive")
        outage.take_down(provider, seconds)
        self.stdout.write(f"{provider} sandbox is down for {seconds:g}s")
