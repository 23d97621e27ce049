"""`make run`: give the demo client an endpoint that points at the example receiver, then run
that receiver (examples/webhook_receiver.py) with the endpoint's secret."""

import os
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from webhooks import services
from webhooks.models import Endpoint

DESCRIPTION = "make run: the demo receiver"
RECEIVER = Path(settings.BASE_DIR) / "examples" / "webhook_receiver.py"


class Command(BaseCommand):
    help = "Point the demo client's demo endpoint at 127.0.0.1:PORT and run the receiver there."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--username", default="demo-client")

    def handle(self, *args, **options) -> None:
        if not settings.DEMO_DATA_ALLOWED:  # the demo's endpoint is demo data: local settings only
            raise CommandError("demo_webhook_receiver runs under the local settings only.")
        url = f"http://127.0.0.1:{options['port']}/webhooks"
        client = get_user_model().objects.filter(username=options["username"]).first()
        if client is None:
            raise CommandError(f"No user {options['username']!r}: run manage.py seed_demo first.")
        endpoint = Endpoint.objects.filter(owner=client, description=DESCRIPTION).first()
        try:
            if endpoint is None:
                endpoint = services.endpoint_create(
                    owner=client, url=url, event_types=[], description=DESCRIPTION
                )
            else:
                endpoint = services.endpoint_update(endpoint=endpoint, url=url, enabled=True)
        except services.WebhookError as exc:
            raise CommandError(
                f"{exc.message} {exc.fields} (the demo needs local settings: http allowed on "
                "127.0.0.1, WEBHOOK_ALLOWED_NETWORKS)"
            )
        self.stdout.write(f"demo webhook endpoint {endpoint.pk} -> {url}", ending="\n")
        self.stdout.flush()
        env = {**os.environ, "WEBHOOK_SECRET": endpoint.secret}
        # The receiver replaces this process (honcho then stops it with the others); its
        # arguments are ours, no shell is involved.
        os.execve(  # noqa: S606  # nosec B606
            sys.executable, [sys.executable, str(RECEIVER), "--port", str(options["port"])], env
        )
