"""Queries used by the API, the admin and the subject's pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from .models import Endpoint, Event


def endpoints_of(owner: Any) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(owner=owner).order_by("created_at", "id")


def feed(owner: Any, *, after: Any = None) -> QuerySet[Event]:
    """The owner's events in order, oldest first, after the given event id; events younger than
    WEBHOOK_FEED_SETTLE are held back, so that one whose transaction committed late (with an
    earlier id) is not skipped by a reader that already moved past it."""
    qs = Event.objects.filter(owner=owner)
    if settings.WEBHOOK_FEED_SETTLE:
        settled = timezone.now() - timedelta(seconds=settings.WEBHOOK_FEED_SETTLE)
        qs = qs.filter(created_at__lte=settled)
    if after is not None:
        qs = qs.filter(id__gt=after)
    return qs.order_by("id")


def events_of_subject(subject_id: str) -> QuerySet[Event]:
    return (
        Event.objects.filter(subject_id=str(subject_id))
        .order_by("sequence")
        .prefetch_related("deliveries__endpoint")
    )


def failing_endpoints(limit: int) -> list[Endpoint]:
    """Endpoints whose attempts have failed since some time (disabled ones too), oldest first."""
    return list(
        Endpoint.objects.filter(failing_since__isnull=False)
        .select_related("owner")
        .order_by("failing_since")[:limit]
    )
