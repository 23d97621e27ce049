"""503 Service Unavailable when a backing service is down or saturated.

A database that refuses connections (down, restarting, `too many clients`, every pooled
connection busy past DB_POOL_TIMEOUT), or a Redis or broker connection that fails, is a
temporary condition: the client should come back later, and nothing it asked for was half
done (each write is one transaction). The API answers in its JSON error format
(bookings/api/exceptions.py calls `is_unavailable`); other pages (the admin) through
`UnavailableMiddleware` for errors raised in a view and `server_error` (config/urls.py's
handler500) for errors raised in a middleware, such as loading the session. Neither renders a
template or reads the database: both may be down.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import kombu.exceptions
from django import db
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import server_error as django_server_error

from config.cache import REDIS_UNAVAILABLE

log = logging.getLogger(__name__)

# Failures of a backing service, not of the request: connection refused or lost, server
# overloaded, pool exhausted (psycopg_pool's PoolTimeout arrives as Django's OperationalError),
# lock or statement timeouts, deadlocks and serialization failures (all OperationalError too,
# and all worth a retry).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    db.OperationalError,
    db.InterfaceError,
    # Redis down, restarting, a replica during a failover, full (config/cache.py).
    *REDIS_UNAVAILABLE,
    kombu.exceptions.OperationalError,
    ConnectionError,
    TimeoutError,
)

MESSAGE = "The service is temporarily unavailable; retry after the time in Retry-After."
HTML = (
    "<!doctype html><title>503 Service Unavailable</title><h1>Service unavailable</h1>"
    "<p>A service this page needs is down or overloaded. Try again in a few seconds.</p>"
)


def is_unavailable(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from, means a backing service is down."""
    seen = 0
    while exc is not None and seen < 10:  # a bounded walk: cause chains can loop
        if isinstance(exc, UNAVAILABLE_ERRORS):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def retry_after() -> str:
    """Seconds a client should wait before retrying (Retry-After), from RETRY_AFTER_UNAVAILABLE."""
    return str(settings.RETRY_AFTER_UNAVAILABLE)


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The 503 for `request`: the API's `{code, message, fields}` under /api/, a small static
    HTML page elsewhere; with Retry-After either way."""
    log.warning(
        "backing service unavailable: %s: %s", type(exc).__name__, exc, extra={"path": request.path}
    )
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse(
            {"code": "service_unavailable", "message": MESSAGE, "fields": {}}, status=503
        )
    else:
        response = HttpResponse(HTML, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = retry_after()
    return response


class UnavailableMiddleware:
    """Answers 503 when a view fails because the database, cache or broker is unavailable
    (DEBUG included: Django's debug page would say 500). DRF views answer through the API's
    exception handler before this runs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_unavailable(exception):
            return unavailable_response(request, exception)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: Django calls it while handling the uncaught exception, so sys.exc_info()
    holds it. A backing service that is down gives 503; anything else Django's own 500."""
    exc = sys.exc_info()[1]
    if exc is not None and is_unavailable(exc):
        return unavailable_response(request, exc)
    return django_server_error(request)
