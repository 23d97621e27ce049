"""Periodic housekeeping of the bookings app (Celery beat)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from .models import IdempotencyKey

PURGE_BATCH = 5000


@shared_task(name="bookings.tasks.purge_expired_idempotency_keys", acks_late=True)
def purge_expired_idempotency_keys() -> int:
    """Delete expired Idempotency-Key records, a batch at a time so that no statement holds
    locks for long; a key reused after its expiry starts afresh anyway (api/idempotency.py).
    Returns how many were deleted."""
    deleted = 0
    now = timezone.now()
    while True:
        batch = list(
            IdempotencyKey.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[
                :PURGE_BATCH
            ]
        )
        if not batch:
            return deleted
        deleted += IdempotencyKey.objects.filter(pk__in=batch).delete()[0]
