"""Where the attempts the engine schedules go once their transaction commits: to the broker, or
to the worker's own list of attempts to run next (a chain).

A Dispatch is made for each engine call (a task run, an API request, an operator action) and
handed down the call: no module state, so every Celery pool (prefork, solo, threads) is safe.
Messages leave only after commit: a rolled-back transaction sends nothing, and a message lost
between the commit and the broker leaves a scheduled attempt whose lease runs out; the sweeper
sends it again."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F

from . import plugins
from .definition import Step
from .models import SagaStep

log = logging.getLogger("sagas.engine")

RUN_STEP_TASK = "sagas.tasks.run_step"


class Dispatch:
    """The attempts scheduled by one engine call, sent after commit.

    `chain_queues`: the queues the calling worker consumes. An attempt due at once on one of
    them is not sent: it is appended to `next`, which the worker runs right after (each
    attempt is still a row with a lease before it runs; if the worker dies first, the lease
    runs out and the sweeper sends it). Empty: every attempt goes through the broker."""

    def __init__(self, *, chain_queues: frozenset[str] = frozenset()) -> None:
        self.chain_queues = chain_queues
        # (attempt, the saga's target as written, the saga's attempts as written or None)
        self.next: list[tuple[SagaStep, Any, list[SagaStep] | None]] = []
        self.plugins = plugins.installed()

    def _chains(self, step: Step, countdown: float) -> bool:
        queue = step.queue or settings.CELERY_TASK_DEFAULT_QUEUE
        return countdown <= 0 and queue in self.chain_queues

    def after_commit(
        self,
        row: SagaStep,
        step: Step,
        countdown: float,
        target: Any,
        history: list[SagaStep] | None = None,
    ) -> None:
        """Hand the attempt on once the transaction that wrote it commits (at once outside a
        transaction: it is written already): to this worker's chain, with `target` (the saga's
        target as written; None: read it again) and `history` (the saga's attempts as written;
        None: read them when needed), or to the broker."""
        if self._chains(step, countdown):
            transaction.on_commit(lambda: self.next.append((row, target, history)))
            return
        step_id, queue = row.pk, step.queue
        transaction.on_commit(lambda: self.send(step_id, queue, countdown))

    def send(self, step_id: int, queue: str | None, countdown: float) -> None:
        """Publish the attempt's message. A broker that is down is not an error here: the row
        is scheduled, and the sweeper sends it again once its lease runs out."""
        # No Celery time limit: one could fire after the provider call succeeded, while the
        # outcome is being recorded. A step's timeout is its lease: past it, the sweeper sends a
        # second copy, which replays the call under the same idempotency key.
        options: dict[str, Any] = {}
        if queue:
            options["queue"] = queue
        if countdown > 0:
            options["countdown"] = countdown
        copies = 1
        for plugin in self.plugins:
            copies = plugin.copies(step_id, copies)
        try:
            for _ in range(copies):
                current_app.send_task(RUN_STEP_TASK, args=(step_id,), **options)
        except Exception:  # the broker is down: the row is scheduled, the sweeper sends again
            log.exception("could not send step attempt %s; the sweeper will send it again", step_id)
            _uncount_dispatch(step_id)


def _uncount_dispatch(step_id: int) -> None:
    """A send that failed (broker down) does not count towards SAGA_MAX_DISPATCHES: an outage
    of the broker must not park sagas as if their worker had died each time."""
    try:
        SagaStep.objects.filter(
            pk=step_id, status=SagaStep.Status.SCHEDULED, dispatch_count__gt=1
        ).update(dispatch_count=F("dispatch_count") - 1)
    except Exception:  # the database is down too: the count stays, the lease still runs out
        log.exception("could not correct the dispatch count of step attempt %s", step_id)
