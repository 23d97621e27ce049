from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print how to reach the demo started by `make run`: logins, token, URLs, examples."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, **options) -> None:
        client = get_user_model().objects.get(username="demo-client")
        token, _ = Token.objects.get_or_create(user=client)
        base = f"http://127.0.0.1:{options['port']}"
        self.stdout.write(
            f"""
Booking operations platform is starting (web, worker, beat). Ctrl-C stops everything.

  Admin:      {base}/admin/   login admin / admin
  API token:  {token.key}   (user demo-client)

Create a booking from another terminal (magic values: --token tok_declined | tok_flaky |
tok_void_fails, --email someone@fraud.test or bounce@example.com, --resource sold-out):

  .venv/bin/python manage.py create_booking --resource garden-room --token tok_visa --wait 30

then watch it in the admin: {base}/admin/bookings/booking/
"""
        )
