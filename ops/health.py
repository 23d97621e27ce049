"""/health/: the database, the caches, the broker, whether a worker answers on every queue, and
the providers' circuit breakers (django-health-check 4.x checks).

Status: 200 when everything answers, 503 with Retry-After when a dependency is down (as every
other answer the service gives while a dependency is down), so a load balancer or an
orchestrator can probe it. An open circuit is a *warning*: it is shown, but it does not fail the
probe, because taking web nodes out of the pool does not bring a payment gateway back.
`/health/web/` checks only what a web node needs itself (database, caches), for a load balancer
that should keep serving reads while the workers are being replaced.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import Any, ClassVar

from celery import current_app
from celery.app import app_or_default
from django.conf import settings
from django.core.cache import caches
from health_check.base import HealthCheck
from health_check.contrib.celery import Ping
from health_check.exceptions import ServiceUnavailable, ServiceWarning
from health_check.views import HealthCheckView

from bookings.providers.guard import circuit_states

from .unavailable import retry_after


@dataclasses.dataclass
class CoordinationCache(HealthCheck):
    """The cache that holds circuit states and rate-limit counters for every worker."""

    def run(self) -> None:
        cache = caches["coordination"]
        key = f"health:{uuid.uuid4().hex}"
        try:
            cache.set(key, "ok", timeout=10)
            ok = cache.get(key) == "ok"
            cache.delete(key)
        except Exception as exc:  # Redis errors do not derive from one builtin class
            raise ServiceUnavailable(f"coordination cache: {type(exc).__name__}") from exc
        if not ok:
            raise ServiceUnavailable("coordination cache did not return what was stored")


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker accepts a connection."""

    timeout: datetime.timedelta = dataclasses.field(
        default=datetime.timedelta(seconds=3), repr=False
    )

    def run(self) -> None:
        try:
            with current_app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.timeout.total_seconds())
        except Exception as exc:  # kombu raises transport-specific errors
            raise ServiceUnavailable(f"broker: {type(exc).__name__}") from exc


@dataclasses.dataclass
class Workers(Ping):
    """At least one worker answers a ping, and every queue (default and per provider) has a
    consumer. The filesystem transport of `make run` cannot broadcast: a warning there."""

    # A check is named by its repr (the JSON and text keys, the OpenMetrics labels): Ping's
    # `app` field would put the Celery app's memory address in it, different in every process.
    app: Any = dataclasses.field(default_factory=app_or_default, repr=False)

    def run(self) -> None:
        if settings.CELERY_BROKER_URL.startswith("filesystem"):
            raise ServiceWarning("workers cannot be pinged on the filesystem transport")
        super().run()


@dataclasses.dataclass
class ProviderCircuits(HealthCheck):
    """Every provider's circuit breaker: an open one is a warning with its cool-down."""

    def run(self) -> None:
        open_ = [status for status in circuit_states() if status.is_open]
        if open_:
            described = ", ".join(
                f"{s.provider} {s.state.replace('_', '-')} (retry at "
                f"{datetime.datetime.fromtimestamp(s.retry_at or 0, datetime.UTC):%H:%M:%S}Z)"
                for s in open_
            )
            raise ServiceWarning(f"circuit open: {described}")


def _ping_timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.HEALTH_WORKER_PING_TIMEOUT)


FULL_CHECKS: list[Any] = [
    "health_check.checks.Database",
    "health_check.checks.Cache",
    CoordinationCache,
    Broker,
    Workers,
    ProviderCircuits,
]
WEB_CHECKS: list[Any] = ["health_check.checks.Database", "health_check.checks.Cache"]


class HealthView(HealthCheckView):
    """django-health-check's view, except that warnings alone do not fail the probe."""

    checks: ClassVar[Any] = FULL_CHECKS

    def get_checks(self) -> Any:
        # The ping timeout is a setting: read it per request, not at import.
        for check in super().get_checks():
            if isinstance(check, Ping):
                check.timeout = _ping_timeout()
            yield check

    async def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:  # django-health-check's "a check failed"
            if only_warnings(self.results):
                response.status_code = 200
            else:  # a dependency is down, not a bug here
                response.status_code = 503
                response["Retry-After"] = retry_after()
        return response


def only_warnings(results: list[Any]) -> bool:
    """True when every failed check only warned."""
    return all(r.error is None or isinstance(r.error, ServiceWarning) for r in results)
