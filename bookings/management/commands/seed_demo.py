from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from bookings.models import Resource

RESOURCES = [
    ("garden-room", "Garden room", 3, Decimal("120.00")),
    ("sea-suite", "Sea view suite", 1, Decimal("340.00")),
    ("sold-out", "Lighthouse loft (sold out every night)", 0, Decimal("500.00")),
]


class Command(BaseCommand):
    help = "Create the demo resources and users (idempotent): admin/admin and demo-client."

    def handle(self, *args, **options) -> None:
        for code, name, capacity, price in RESOURCES:
            Resource.objects.update_or_create(
                code=code,
                defaults={"name": name, "capacity": capacity, "nightly_price": price},
            )
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
        client, _ = User.objects.get_or_create(username="demo-client")
        if not client.has_usable_password():
            client.set_password("demo-client")
            client.save()
        self.stdout.write("demo data ready: 3 resources, users admin and demo-client")
