import os
import secrets
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from bookings.models import Resource

RESOURCES = [
    # Enough rooms that the banner's commands, run again and again (they book the same dates),
    # keep answering `completed` as the README says.
    ("garden-room", "Garden room", 50, Decimal("120.00")),
    ("sea-suite", "Sea view suite", 1, Decimal("340.00")),
    ("sold-out", "Lighthouse loft (sold out every night)", 0, Decimal("500.00")),
]
ADMIN = "admin"
CLIENT = "demo-client"


def admin_password_file() -> Path:
    """Where the demo superuser's generated password is kept for the `make run` banner."""
    return Path(settings.DATA_DIR) / "demo-admin-password"


def settings_module() -> str:
    """The settings this process runs, as DJANGO_SETTINGS_MODULE names them."""
    return os.environ.get("DJANGO_SETTINGS_MODULE") or str(settings.SETTINGS_MODULE)


def refuse_unless_demo_allowed(command: str) -> None:
    # Demo users have credentials printed on a terminal: never in a deployment.
    if not settings.DEMO_DATA_ALLOWED:
        raise CommandError(
            f"{command} is refused under {settings_module()}: demo data (a superuser and "
            "an API client) belongs to the local settings only "
            "(DJANGO_SETTINGS_MODULE=config.settings.local)."
        )


class Command(BaseCommand):
    help = (
        "Create the demo resources and users (idempotent): the superuser admin, with a random "
        "password generated once and printed by demo_info, and the API client demo-client. "
        "Refused unless the settings allow demo data (config.settings.local)."
    )

    def handle(self, *args, **options) -> None:
        refuse_unless_demo_allowed("seed_demo")
        for code, name, capacity, price in RESOURCES:
            Resource.objects.update_or_create(
                code=code,
                defaults={"name": name, "capacity": capacity, "nightly_price": price},
            )
        self._admin()
        User = get_user_model()
        client, _ = User.objects.get_or_create(username=CLIENT)
        if client.has_usable_password():
            # The client uses its API token (demo_info prints it); a password would only open
            # a session anybody could guess.
            client.set_unusable_password()
            client.save()
        self.stdout.write(f"demo data ready: 3 resources, users {ADMIN} and {CLIENT}")

    def _admin(self) -> None:
        """The superuser keeps the password generated the first time, as long as its file says
        it; one with any other password (an older demo's admin/admin) gets a new random one."""
        User = get_user_model()
        path = admin_password_file()
        known = path.read_text().strip() if path.exists() else ""
        admin = User.objects.filter(username=ADMIN).first()
        if admin is not None and known and admin.check_password(known):
            return
        password = secrets.token_urlsafe(12)
        if admin is None:
            User.objects.create_superuser(ADMIN, "admin@example.com", password)
        else:
            admin.set_password(password)
            admin.save()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Readable by its owner only: the file is as good as the password.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        path.chmod(0o600)  # a file left by an older run keeps its mode through O_CREAT
