"""gunicorn settings for the web process (Procfile: `gunicorn config.wsgi -c config/gunicorn.py`).

Listens on $PORT (default 8000) on all interfaces of the web node; $WEB_CONCURRENCY worker
processes (default 2 x CPUs + 1). Access lines come from django-structlog (JSON, with the
request_id), so gunicorn's own access log stays off.
"""

import multiprocessing
import os

# A web node listens on all its interfaces, behind the load balancer (WEB_BIND to narrow it).
ALL_INTERFACES = "0.0.0.0"  # noqa: S104  # nosec B104
bind = f"{os.environ.get('WEB_BIND', ALL_INTERFACES)}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("WEB_THREADS", "1"))
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Recycle workers now and then so that a slow leak cannot grow without bound.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "2000"))
max_requests_jitter = 200
accesslog = None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server, worker):
    """A web process ended: stop summing its live gauges (prometheus_client multiprocess)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
