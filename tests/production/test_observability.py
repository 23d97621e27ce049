"""With real workers on the real broker and database: sagas completing across workers on
separate queues, /metrics from web and worker, JSON logs that follow a booking from the API
request into the tasks and hold no secret, and /health/."""

from __future__ import annotations

import re
import urllib.request
import uuid

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from bookings.models import Booking
from bookings.providers.guard import circuit
from sagas.models import SagaStep

from ..conftest import ON_POSTGRES
from ..factories import ResourceFactory, UserFactory, stay
from ..helpers import assert_invariants, book, wait_settled
from .conftest import read_json_lines

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

needs_broadcast = pytest.mark.skipif(
    not ON_POSTGRES, reason="worker pings need a broadcasting broker (Redis or RabbitMQ)"
)


def test_sagas_complete_across_two_workers_consuming_different_queues(start_worker, settings):
    default = settings.CELERY_TASK_DEFAULT_QUEUE
    queues = {
        "BOOKING_QUEUE_PAYMENTS": f"{default}.payments",
        "BOOKING_QUEUE_INVENTORY": f"{default}.inventory",
        "BOOKING_QUEUE_EMAIL": f"{default}.notifications",
    }
    # The test process sends each saga's first step (fraud) to the default queue; from then on
    # the workers route each step by the queue names in their environment.
    front = start_worker(
        "front",
        queues=f"{default},{queues['BOOKING_QUEUE_EMAIL']}",
        extra_env=queues,
    )
    providers = start_worker(
        "providers",
        queues=f"{queues['BOOKING_QUEUE_PAYMENTS']},{queues['BOOKING_QUEUE_INVENTORY']}",
        extra_env=queues,
    )
    room = ResourceFactory(code="garden-room", capacity=20)
    bookings = [book(room, email=f"guest{i}@example.com") for i in range(8)]
    bookings.append(book(room, token="tok_declined"))
    settled = wait_settled(bookings, timeout=120)
    assert sorted(b.state for b in settled) == ["cancelled"] + ["completed"] * 8
    ran_on = {
        (row.name, row.direction): row.worker.split("@")[0]
        for row in SagaStep.objects.filter(status="succeeded")
    }
    assert ran_on[("fraud_check", "action")] == front.name
    assert ran_on[("preauthorize", "action")] == providers.name
    assert ran_on[("confirm", "action")] == providers.name
    assert ran_on[("send_email", "action")] == front.name
    assert_invariants(bookings)


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_of_web_and_worker_count_a_saga_run_by_a_real_worker(
    start_worker, free_port, tmp_path
):
    before = Client().get("/metrics").content.decode()
    start_worker(
        "metrics",
        extra_env={
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
            "CELERY_WORKER_METRICS_PORT": str(free_port),
        },
    )
    room = ResourceFactory(code="garden-room")
    bookings = [book(room), book(room, token="tok_flaky"), book(room, token="tok_declined")]
    wait_settled(bookings, timeout=90)

    web = Client().get("/metrics")
    assert web.status_code == 200
    text = web.content.decode()
    started = _sample(text, "saga_started_total", saga_type="booking")
    assert started - _sample(before, "saga_started_total", saga_type="booking") == 3
    assert "django_http_requests_total_by_method_total" in text
    assert _sample(text, "saga_oldest_stuck_age_seconds") == 0
    assert _sample(text, "saga_by_status", status="completed") == 2
    assert _sample(text, "booking_provider_circuit_state", provider="payments") == 0

    with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/metrics", timeout=5) as r:
        worker = r.read().decode()
    preauth = {"saga_type": "booking", "step": "preauthorize", "direction": "action"}
    assert _sample(worker, "saga_step_attempts_total", **preauth, outcome="succeeded") == 2
    assert _sample(worker, "saga_step_retries_total", **preauth) == 2  # tok_flaky: two retries
    assert _sample(worker, "saga_step_failures_total", **preauth, kind="transient") == 2
    assert _sample(worker, "saga_step_failures_total", **preauth, kind="permanent") == 1
    assert _sample(worker, "saga_step_duration_seconds_count", **preauth) == 5
    assert _sample(worker, "saga_completed_total", saga_type="booking") == 2
    assert (
        _sample(worker, "saga_cancelled_total", saga_type="booking", reason="payment_declined") == 1
    )


def test_logs_are_json_follow_a_booking_from_the_api_request_into_its_tasks_and_hold_no_secret(
    start_worker, json_logs
):
    worker = start_worker("logs", extra_env={"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"})
    ResourceFactory(code="garden-room")
    user = UserFactory(username="log-client", password="Sup3r-secret-pw")
    token = Token.objects.create(user=user)
    card_like = "4111111111111111"
    payment_token = f"tok_live_{card_like}"
    check_in, check_out = stay(10, 2)
    request_id = f"req-{uuid.uuid4()}"
    response = Client().post(
        "/api/v1/bookings/",
        {
            "resource": "garden-room",
            "check_in": check_in.isoformat(),
            "check_out": check_out.isoformat(),
            "guest_name": "Ada Lovelace",
            "guest_email": "ada@example.com",
            "payment_token": payment_token,
        },
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token.key}",
        HTTP_X_REQUEST_ID=request_id,
    )
    assert response.status_code in (201, 202), response.content
    booking = Booking.objects.get(guest_email="ada@example.com")
    [booking] = wait_settled([booking], timeout=60)
    assert booking.state == "completed"
    Client().login(username="log-client", password="Sup3r-secret-pw")
    worker.stop()

    web_lines = json_logs.records()
    worker_lines = read_json_lines(worker.log_path.read_text())
    assert any(line.get("request_id") == request_id for line in web_lines)
    about_saga = [line for line in worker_lines if line.get("saga_id") == str(booking.saga_id)]
    steps = {line["step"] for line in about_saga if "step" in line}
    assert steps == {"fraud_check", "preauthorize", "confirm", "send_email"}
    for line in about_saga:
        assert line["reference"] == booking.reference, line
        assert line["request_id"] == request_id, line
        if line["event"].startswith("step "):
            assert {"step", "attempt", "direction"} <= line.keys(), line
    assert any(line["event"] == "saga completed" for line in about_saga)

    everything = json_logs.text() + worker.log_path.read_text()
    for secret in (payment_token, card_like, token.key, "Sup3r-secret-pw"):
        assert secret not in everything


@needs_broadcast
def test_health_reports_every_dependency_and_an_open_circuit_only_as_a_warning(
    start_worker, settings, capsys
):
    settings.HEALTH_WORKER_PING_TIMEOUT = 2
    # A consumer on every queue, the webhooks' too (a queue without one is unavailable).
    start_worker("health", queues=",".join(q.name for q in settings.CELERY_TASK_QUEUES))
    ok = Client().get("/health/", HTTP_ACCEPT="application/json")
    assert ok.status_code == 200, ok.content
    report = ok.json()
    assert len(report) == 6 and set(report.values()) == {"OK"}, report

    settings.BOOKING_CIRCUIT_BREAKERS = {"payments": {"failure_threshold": 1, "cool_down": 60}}
    circuit("payments").failed("some-call")
    warned = Client().get("/health/", HTTP_ACCEPT="application/json")
    assert warned.status_code == 200
    assert any(
        re.search(r"Warning: circuit open: payments open", v) for v in warned.json().values()
    )

    call_command("health")
    printed = capsys.readouterr().out
    assert "Database" in printed and "Broker" in printed and "circuit open: payments" in printed


@needs_broadcast
def test_health_fails_the_probe_when_no_worker_answers(settings):
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.5
    down = Client().get("/health/", HTTP_ACCEPT="text/plain")
    assert down.status_code == 503 and down["Retry-After"]
    assert "Celery workers unavailable" in down.content.decode()
    with pytest.raises(SystemExit) as exit_:
        call_command("health")
    assert exit_.value.code == 1
    assert Client().get("/health/web/").status_code == 200
