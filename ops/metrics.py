"""/metrics in the Prometheus text format, and the worker-side metrics server.

Served: django-prometheus's request, database and cache metrics, the engine's counters and
histograms (sagas/instrument.py), the provider guards' counters (bookings/providers/guard.py),
and gauges read at scrape time: saga counts by status, the age of the oldest stuck saga, and
each provider's circuit state.

Processes: gunicorn and Celery's prefork pool run several processes; with PROMETHEUS_MULTIPROC_DIR
set (Procfile: bin/metrics-dir), each writes its samples there and the collector sums them.
Workers serve their own directory on CELERY_WORKER_METRICS_PORT (see config/celery.py), so a
worker machine without a web process is scraped directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bookings.providers.guard import circuit_states
from sagas.instrument import SagaStateCollector

STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class CircuitCollector(Collector):
    """Each provider's circuit, read from the shared cache at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "booking_provider_circuit_state",
            "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
            labels=["provider"],
        )
        is_open = GaugeMetricFamily(
            "booking_provider_circuit_open",
            "1 while the provider's circuit is open or half-open (its steps wait), else 0.",
            labels=["provider"],
        )
        for status in circuit_states():
            state.add_metric([status.provider], STATE_VALUES[status.state])
            is_open.add_metric([status.provider], 1 if status.is_open else 0)
        yield state
        yield is_open


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class _Everything(Collector):
    """This process's default registry, as one collector of a per-scrape registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def process_registry() -> CollectorRegistry:
    """The samples of every process of this group (multiprocess mode) or of this process."""
    registry = CollectorRegistry()
    if multiprocess_mode():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Everything())
    return registry


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: request metrics, saga and provider metrics, scrape-time gauges."""
    registry = process_registry()
    registry.register(SagaStateCollector())
    registry.register(CircuitCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def serve_worker_metrics(port: int, addr: str) -> bool:
    """Serve this worker's metrics (all its pool processes) on `port`. Called once, when the
    worker's main process is ready (Celery's worker_ready); port 0: not served."""
    if not port:
        return False
    registry = process_registry()
    registry.register(CircuitCollector())
    start_http_server(port, addr=addr, registry=registry)
    return True
