"""gunicorn settings for the web process (Procfile: `gunicorn config.wsgi -c config/gunicorn.py`).

Listens on $PORT (default 8000) on all interfaces of the web node; $WEB_CONCURRENCY worker
processes (default: one per CPU) of $WEB_THREADS threads each (default 4). Access lines come
from django-structlog (JSON, with the request_id), so gunicorn's own access log stays off.

Threaded workers (gthread) because `Prefer: wait` holds a request for up to API_PREFER_WAIT_MAX
seconds: a sync worker doing that is one process blocked, and its heartbeat with it, so the
arbiter killed it at `timeout` (HTML 500s after the booking was committed). A gthread worker's
main loop keeps beating while its threads wait, and at most half of its threads may wait at once
(API_PREFER_WAIT_CONCURRENCY, bookings/api/prefer.py), so the others keep serving everyone.
Each worker's database pool holds as many connections as it has threads (DB_POOL_MAX_SIZE).
"""

import multiprocessing
import os

# A web node listens on all its interfaces, behind the load balancer (WEB_BIND to narrow it).
ALL_INTERFACES = "0.0.0.0"  # noqa: S104  # nosec B104
bind = f"{os.environ.get('WEB_BIND', ALL_INTERFACES)}:{os.environ.get('PORT', '8000')}"
# One process per core, each with a few threads: the requests mostly wait on PostgreSQL, and the
# Celery worker on the same machine needs CPU too.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# No recycling by default (WEB_MAX_REQUESTS=N turns it on, after N requests, with jitter).
# Keep-alive connections stay with the process that accepted them: when a process was
# recycled, its clients reconnected to the others, kept them, and the new process got none, so
# under steady load one process of two served everything until the next recycle (the API's
# throughput halved for tens of seconds at a time in the front-door bench: 62 against 140
# creates/s). A web process's memory levels off (about 107 MB after 4,000 creates, as after
# 2,000); a deployment that fears a leak recycles whole instances behind its load balancer.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# The application (and so each worker's connection pool) is loaded in each worker after the
# fork, never in the arbiter: a psycopg pool's threads and sockets do not survive a fork.
preload_app = False
# gunicorn >= 25.1 opens a control socket at one fixed path per user ($HOME/.gunicorn/): a second
# gunicorn on the machine (another service, a load test) takes it over. Nothing here uses it.
control_socket_disable = True

# Read by Django in each worker (the environment is inherited): a pool connection per thread,
# and waits on at most half the threads.
os.environ.setdefault("DB_POOL_MAX_SIZE", str(threads))
os.environ.setdefault("API_PREFER_WAIT_CONCURRENCY", str(threads // 2))

# The same default as API_PREFER_WAIT_MAX in config/settings/base.py.
PREFER_WAIT_MAX = int(os.environ.get("API_PREFER_WAIT_MAX", "20"))
# Time left after the longest wait to build and send its answer.
WAIT_MARGIN = 10
if timeout < PREFER_WAIT_MAX + WAIT_MARGIN:
    raise RuntimeError(
        f"API_PREFER_WAIT_MAX={PREFER_WAIT_MAX} must be at least {WAIT_MARGIN} s below "
        f"WEB_TIMEOUT={timeout}: lower the one or raise the other."
    )


def child_exit(server, worker):
    """A web process ended: stop summing its live gauges (prometheus_client multiprocess)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
