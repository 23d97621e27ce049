"""Thin Celery tasks: they take ids and call the webhooks services."""

from collections import Counter

from celery import shared_task

from . import services


@shared_task(
    name="webhooks.tasks.drain",
    acks_late=True,
    reject_on_worker_lost=True,
    # A backstop above the drain's own bounds: a drain stuck past it is stopped, its lease runs
    # out and the sweeper wakes the endpoint again.
    time_limit=services.drain_lease(),
)
def drain(endpoint_id: str, trailing: bool = False) -> str:
    """Send an endpoint's due deliveries (the message carries only the endpoint's id)."""
    outcomes = Counter(services.drain(endpoint_id, trailing=trailing).values())
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())) or "none"


@shared_task(name="webhooks.tasks.sweep", acks_late=True)
def sweep() -> int:
    """Periodic (Celery beat): wake the endpoints of the due deliveries that no drain took."""
    return services.sweep()
