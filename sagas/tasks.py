"""Thin Celery tasks: they take ids and call the engine."""

from celery import shared_task
from celery.signals import task_prerun
from django.conf import settings
from django.db import close_old_connections

from . import engine, recovery


@task_prerun.connect
def _fresh_connections(**kwargs: object) -> None:
    """Before each task, as Django does before each request: drop connections that broke (a
    restarted database) or outlived CONN_MAX_AGE; keep the others (settings.CELERY_DB_REUSE_MAX)."""
    close_old_connections()


@shared_task(name="sagas.tasks.run_step", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_step(self, step_id: int) -> str:
    """Run one attempt of a saga step (action or compensation), and with SAGA_CHAIN_STEPS the
    attempts it schedules at once on this same queue (see engine.execute)."""
    # The queues this worker consumes (-Q, or every queue): a next step on one of them may run
    # here at once; a step on a queue served by other workers goes through the broker.
    queues = frozenset(self.app.amqp.queues.consume_from) if settings.SAGA_CHAIN_STEPS else None
    return engine.execute(
        step_id,
        task_id=self.request.id or "",
        worker=self.request.hostname or "",
        chain_queues=queues,
    )


@shared_task(name="sagas.tasks.sweep", acks_late=True)
def sweep() -> dict:
    """Periodic (Celery beat): send again every attempt whose lease ran out."""
    return recovery.sweep().as_dict()
