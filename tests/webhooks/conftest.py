"""API clients (users with tokens) for the webhooks API tests, as in tests/api/; and the run's
webhooks queue deleted at the end, as tests/conftest.py does with the sagas' queue."""

from collections.abc import Iterator

import pytest
from celery import current_app
from django.conf import settings

from ..api.conftest import _fresh_throttle_counts, alice, bob, client_for  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def _delete_webhooks_queue() -> Iterator[None]:
    yield
    if not settings.CELERY_BROKER_URL.startswith("filesystem"):
        try:
            with current_app.connection_for_write() as conn:
                conn.default_channel.queue_delete(settings.WEBHOOK_QUEUE)
        except Exception as exc:  # the broker may be down after a fault test; nothing to clean
            print(f"could not delete the webhooks test queue: {exc}")
