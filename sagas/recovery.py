"""The sweeper: finds attempts that were scheduled but never reported an outcome within their
lease (message lost between commit and broker, worker killed, broker restarted) and sends them
again. Run by Celery beat and by `manage.py sweep_sagas`; safe to run concurrently."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from . import engine
from .models import Saga, SagaStep


def stuck_condition(now: datetime | None = None, *, through: str = "") -> Q:
    """The product's one definition of a stuck saga, used by the admin, the dashboard, the
    on-call commands, the consistency check and the metrics: it is active (running or
    compensating) and nothing will move it on by itself, because its scheduled attempt's lease
    ran out (the worker or the message was lost, and the sweeper has not sent it again yet) or
    no attempt is scheduled at all.

    Not stuck: a saga waiting for a retry (its lease runs from when the retry is due), and one
    parked for an operator (it requires attention, by design, and is shown as such).
    `through` is the path from the model queried to its saga ("saga" for a booking); empty for
    Saga itself."""
    now = now or timezone.now()
    prefix = f"{through}__" if through else ""
    saga_id = OuterRef(f"{through}_id" if through else "pk")
    scheduled = SagaStep.objects.filter(saga_id=saga_id, status=SagaStep.Status.SCHEDULED)
    active = Q(**{f"{prefix}status__in": Saga.ACTIVE})
    return active & (Exists(scheduled.filter(lease_expires_at__lt=now)) | ~Exists(scheduled))


def stalled_steps(now: datetime | None = None) -> QuerySet[SagaStep]:
    """Scheduled attempts whose lease has run out, oldest first (served by a partial index)."""
    now = now or timezone.now()
    return SagaStep.objects.filter(
        status=SagaStep.Status.SCHEDULED, lease_expires_at__lt=now
    ).order_by("lease_expires_at")


@dataclass
class SweepReport:
    redispatched: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"redispatched": self.redispatched, "gave_up": self.gave_up}


def sweep(
    *, now: datetime | None = None, limit: int | None = None, dry_run: bool = False
) -> SweepReport:
    """Send again each stalled attempt (at most `limit`, default SAGA_SWEEP_BATCH)."""
    now = now or timezone.now()
    limit = limit or settings.SAGA_SWEEP_BATCH
    report = SweepReport()
    ids = list(stalled_steps(now).values_list("id", flat=True)[:limit])
    if dry_run:
        report.redispatched = ids
        return report
    sent, left = engine.redispatch_many(ids, now=now)
    report.redispatched.extend(sent)
    for step_id in left:
        label = engine.redispatch(step_id, now=now)
        if label == "redispatched":
            report.redispatched.append(step_id)
        elif label == "gave up":
            report.gave_up.append(step_id)
    return report
