"""Thin Celery tasks: they take ids and call the webhooks services."""

from celery import shared_task
from django.conf import settings

from . import services

# A backstop above the attempt's own timeouts: a task stuck past it is stopped, its lease runs
# out and the sweeper sends the delivery again.
HARD_LIMIT = (
    settings.WEBHOOK_CONNECT_TIMEOUT + settings.WEBHOOK_TIMEOUT + settings.WEBHOOK_LEASE_MARGIN
)


@shared_task(
    name="webhooks.tasks.deliver",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=HARD_LIMIT,
)
def deliver(delivery_id: int) -> str:
    """One attempt of one delivery (the message carries only the delivery's id)."""
    return services.deliver(delivery_id)


@shared_task(name="webhooks.tasks.sweep", acks_late=True)
def sweep() -> int:
    """Periodic (Celery beat): send again every due delivery whose message nobody took."""
    return services.sweep()
