import uuid
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print how to reach the demo started by `make run`: logins, token, URLs, examples."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, **options) -> None:
        client = get_user_model().objects.get(username="demo-client")
        token, _ = Token.objects.get_or_create(user=client)
        base = f"http://127.0.0.1:{options['port']}"
        check_in = timezone.localdate() + timedelta(days=7)
        check_out = check_in + timedelta(days=2)
        self.stdout.write(
            f"""
Booking operations platform is starting (web, worker, beat). Ctrl-C stops everything.

  Admin:      {base}/admin/   login admin / admin
  API token:  {token.key}   (user demo-client)

Create a booking from another terminal (magic values: --token tok_declined | tok_flaky |
tok_void_fails, --email someone@fraud.test or bounce@example.com, --resource sold-out):

  .venv/bin/python manage.py create_booking --resource garden-room --token tok_visa --wait 30

then watch it in the admin: {base}/admin/bookings/booking/

Or through the client API (docs: {base}/api/v1/docs/):

  curl -s -X POST {base}/api/v1/bookings/ -H "Authorization: Token {token.key}" \\
    -H "Content-Type: application/json" -H "Idempotency-Key: {uuid.uuid4()}" \\
    -H "Prefer: wait=10" -d '{{"resource": "garden-room", "check_in": "{check_in}",
    "check_out": "{check_out}", "guest_name": "Grace Hopper",
    "guest_email": "grace@example.com", "payment_token": "tok_visa"}}'
(run it twice: the same key answers the same booking), then with its "id":

  curl -s {base}/api/v1/bookings/<id>/ -H "Authorization: Token {token.key}"
  curl -s -X POST {base}/api/v1/bookings/<id>/cancel/ -H "Authorization: Token {token.key}"
"""
        )
