"""The Celery application: configuration comes from Django settings (CELERY_* names).

Worker-side observability is wired here, on Celery's signals:
- structured logs: Celery keeps its hands off logging (the setup_logging receiver below), so
  Django's LOGGING (JSON through structlog, level LOG_LEVEL; --loglevel is not used) formats
  every line; django-structlog's
  receiver (DJANGO_STRUCTLOG_CELERY_ENABLED) reads the request_id from the task headers and binds
  it, and sagas.instrument binds the saga and step while one runs;
- metrics: in prometheus_client multiprocess mode each pool process writes its samples to
  PROMETHEUS_MULTIPROC_DIR; the main process serves them on CELERY_WORKER_METRICS_PORT, and a
  pool process that exits is marked dead so that its gauges stop counting.
"""

import os

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_process_shutdown, worker_ready
from django_structlog.celery.steps import DjangoStructLogInitStep

# Fail closed: a process started without DJANGO_SETTINGS_MODULE runs the production settings,
# which refuse to start without their required variables; local ones are asked for by name.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = Celery("bookingops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# In workers: bind the request_id (and the rest of the publisher's log context) carried in the
# task headers before each task, and log each task's start and end.
app.steps["worker"].add(DjangoStructLogInitStep)


@setup_logging.connect
def _keep_django_logging(**kwargs):
    """Celery must not install its own root handler (plain text): Django's LOGGING, with the
    level of LOG_LEVEL, stays in charge of every line a worker or beat writes."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@worker_init.connect
def _fit_database_pool(sender=None, **kwargs):
    """A worker under the threads pool runs up to `concurrency` tasks at once in one process,
    all drawing on that process's database pool: the pool must hold as many connections, or
    the extra tasks wait for one and fail when DB_POOL_TIMEOUT runs out (their attempts then
    wait for the sweeper). Prefork and solo run one task per process: nothing to change."""
    from django.conf import settings

    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    concurrency = getattr(sender, "concurrency", None)
    if isinstance(pool, dict) and isinstance(concurrency, int):
        pool["max_size"] = max(pool.get("max_size", 1), concurrency)


@worker_ready.connect
def _serve_metrics(sender=None, **kwargs):
    from django.conf import settings

    from ops.metrics import serve_worker_metrics

    serve_worker_metrics(settings.CELERY_WORKER_METRICS_PORT, settings.CELERY_WORKER_METRICS_ADDR)


@worker_process_shutdown.connect
def _mark_process_dead(pid=None, **kwargs):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
