import http.client
import os
import shlex
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from rest_framework.authtoken.models import Token

from .seed_demo import (
    ADMIN,
    CLIENT,
    admin_password_file,
    refuse_unless_demo_allowed,
    settings_module,
)

# What decides which database, broker and caches a command talks to: the banner's commands
# carry the values this process was started with, so that they work pasted in a fresh shell.
CARRIED_ENVIRONMENT = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "COORDINATION_CACHE_URL",
    "DATA_DIR",
)


def command_prefix() -> str:
    """`cd <project> && DJANGO_SETTINGS_MODULE=... [DATABASE_URL=...] .venv/bin/python manage.py`:
    the settings are asked for by name (a bare manage.py runs the production settings)."""
    values = {"DJANGO_SETTINGS_MODULE": settings_module()}
    values.update({name: os.environ[name] for name in CARRIED_ENVIRONMENT if os.environ.get(name)})
    assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in values.items())
    return f"cd {shlex.quote(str(settings.BASE_DIR))} && {assignments} .venv/bin/python manage.py"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


# Seconds the banner waits after the web answers when the workers cannot be pinged.
WORKER_GRACE = 3


class Command(BaseCommand):
    help = "Print how to reach the demo started by `make run`: logins, token, URLs, examples."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--after-start",
            type=float,
            default=0,
            metavar="SECONDS",
            help="wait (at most SECONDS) until the web server's /health/ answers 200 (with a "
            "broker that can ping them, once the workers answer too), so that the banner is "
            "printed after the processes' own start-up banners, not scrolled away under them",
        )
        parser.add_argument(
            "--parent",
            type=int,
            default=0,
            metavar="PID",
            help="with --after-start: stop waiting, and print nothing, once process PID has "
            "exited (make run passes its honcho's; default: this command's parent)",
        )

    def wait_for_start(self, port: int, seconds: float, parent: int) -> bool:
        """Poll 127.0.0.1:`port`/health/ until it answers 200, for at most `seconds` and while
        process `parent` (make run's honcho) lives. True once it answered."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and alive(parent):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request("GET", "/health/", headers={"Accept": "application/json"})
                answer = connection.getresponse()
                if answer.status == 200:
                    if "cannot be pinged" in answer.read().decode():
                        # The filesystem broker cannot ping workers: the web is up, and the
                        # worker, started with it, needs about a second more for its banner.
                        time.sleep(WORKER_GRACE)
                    return True
            except OSError:  # not listening yet
                pass
            finally:
                connection.close()
            time.sleep(1)  # also after a 500: the workers are starting
        return False

    def handle(self, *args, **options) -> None:
        refuse_unless_demo_allowed("demo_info")
        path = admin_password_file()
        if not path.exists():
            raise CommandError(f"{path} is missing: run seed_demo first.")
        password = path.read_text().strip()
        client = get_user_model().objects.get(username=CLIENT)
        token, _ = Token.objects.get_or_create(user=client)
        base = f"http://127.0.0.1:{options['port']}"
        if options["after_start"]:
            parent = options["parent"] or os.getppid()
            try:
                started = self.wait_for_start(options["port"], options["after_start"], parent)
            except KeyboardInterrupt:  # Ctrl-C before the processes were up: nobody to tell
                return
            if not alive(parent):  # make run stopped meanwhile: nobody to tell either
                return
            if not started:
                self.stderr.write(
                    f"{base}/health/ did not answer 200 within {options['after_start']:.0f} s: "
                    "see the processes' output above."
                )
        check_in = timezone.localdate() + timedelta(days=7)
        check_out = check_in + timedelta(days=2)
        self.stdout.write(
            f"""
Booking operations platform is running (web, worker, beat). Ctrl-C stops everything.

  Admin:      {base}/admin/   login {ADMIN} / {password}
              (generated for this machine; kept in {path})
  API token:  {token.key}   (user {CLIENT})

Create a booking from another terminal (magic values: --token tok_declined | tok_flaky |
tok_void_fails, --email someone@fraud.test or bounce@example.com, --resource sold-out):

  {command_prefix()} create_booking --resource garden-room --token tok_visa --wait 30

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
