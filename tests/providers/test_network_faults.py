"""The network boundary, with real workers: the HTTP-speaking providers (Stripe through its
local server, e-mail through a real SMTP server) time out after acting, reset the connection,
answer 429 with Retry-After and answer 5xx. Each case ends in its documented state with one
effect at the provider; what each fault did to the saga (attempts, time) is written to
test-artifacts/network-faults.json, and docs/providers.md quotes it."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import pytest

from bookings.models import Booking
from bookings.providers import base as providers
from bookings.providers.models import EmailRecord
from sagas.models import SagaStep

from ..conftest import ARTIFACTS
from ..factories import ResourceFactory
from ..helpers import assert_invariants, book, settle_with_sweeper, wait_settled
from .smtp_server import SmtpServer

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.django_db(transaction=True)]

STRIPE = "bookings.providers.stripe_payments.StripePaymentGateway"
SMTP = "bookings.providers.email.DjangoEmailSender"
RESULTS = ARTIFACTS / "network-faults.json"


def record(case: str, booking: Booking, seconds: float, **extra: Any) -> None:
    """Keep what the fault did to the saga: its attempts per step and how long it took."""
    attempts = [
        f"{s.name}/{s.direction}#{s.attempt}:{s.status}" + (f" {s.error_code}" * bool(s.error_code))
        for s in SagaStep.objects.filter(saga_id=booking.saga_id).order_by("id")
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    found = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    found[case] = {"state": booking.state, "seconds": round(seconds, 2), "attempts": attempts,
                   **extra}  # fmt: skip
    RESULTS.write_text(json.dumps(found, indent=2))


@pytest.fixture
def on_stripe(settings, stripe_server) -> dict[str, str]:
    """Stripe as the gateway, here (for the checks' lookups) and in the workers."""
    settings.BOOKING_PROVIDERS = {**settings.BOOKING_PROVIDERS, "payments": STRIPE}
    providers.reset_cache()
    return {
        "BOOKING_PAYMENT_PROVIDER": STRIPE,
        "STRIPE_API_KEY": "sk_test_local",
        "STRIPE_API_BASE": stripe_server.url,
        "STRIPE_TIMEOUT": "3",
    }


@pytest.fixture
def on_smtp(settings, smtp_server: SmtpServer) -> dict[str, str]:
    settings.BOOKING_PROVIDERS = {**settings.BOOKING_PROVIDERS, "email": SMTP}
    providers.reset_cache()
    return {
        "BOOKING_EMAIL_PROVIDER": SMTP,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
        "EMAIL_TIMEOUT": "3",
    }


# --- Stripe ----------------------------------------------------------------------------------

STRIPE_FAULTS = {
    # fault at the first authorization request: (options, what the attempt raised)
    "timeout_after_acting": ({}, "timeout"),
    "reset_after_acting": ({"kind": "lose_response"}, "timeout"),
    "reset_before_acting": ({"kind": "reset"}, "timeout"),
    "429_retry_after": ({"kind": "rate_limited", "retry_after": 2}, "rate_limited"),
    "503": ({"kind": "server_error", "status": 503}, "timeout"),
    "500": ({"kind": "server_error", "status": 500}, "timeout"),
}


@pytest.mark.parametrize("case", list(STRIPE_FAULTS))
def test_a_stripe_fault_at_authorization_ends_completed_with_one_hold(
    case, start_worker, stripe_server, on_stripe
):
    options, error = STRIPE_FAULTS[case]
    stripe_server.fail_next(options.get("kind", case), path_contains="/v1/payment_intents",
                            **{k: v for k, v in options.items() if k != "kind"})  # fmt: skip
    start_worker("stripe", extra_env=on_stripe)
    started = time.monotonic()
    booking = book(ResourceFactory(code="garden-room", capacity=5), token="pm_card_visa")
    [booking] = wait_settled([booking], timeout=90)
    record(f"stripe {case}", booking, time.monotonic() - started)
    assert booking.state == "completed"
    assert len(stripe_server.intents) == 1 and len(stripe_server.holds()) == 1
    keys = {r.headers["idempotency-key"] for r in stripe_server.posts()}
    assert keys == {f"{booking.saga_id}:preauthorize:action"}
    first = SagaStep.objects.filter(saga_id=booking.saga_id, name="preauthorize").order_by("id")[0]
    assert first.error_code == error
    assert_invariants([booking])


def test_a_void_whose_response_is_lost_is_retried_into_one_cancel(
    start_worker, stripe_server, on_stripe
):
    stripe_server.fail_next("lose_response", path_contains="/cancel")
    start_worker("stripe", extra_env=on_stripe)
    started = time.monotonic()
    booking = book(ResourceFactory(code="sold-out", capacity=0), token="pm_card_visa")
    [booking] = wait_settled([booking], timeout=90)
    record("stripe void reset_after_acting", booking, time.monotonic() - started)
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "unavailable")
    assert [i["status"] for i in stripe_server.intents.values()] == ["canceled"]
    assert_invariants([booking])


def test_a_card_decline_cancels_the_booking_without_a_hold(start_worker, stripe_server, on_stripe):
    start_worker("stripe", extra_env=on_stripe)
    booking = book(ResourceFactory(code="garden-room", capacity=5), token="pm_card_chargeDeclined")
    [booking] = wait_settled([booking], timeout=90)
    assert (booking.state, booking.cancellation_reason) == ("cancelled", "payment_declined")
    assert stripe_server.holds() == []
    assert_invariants([booking])


def test_time_a_booking_takes_end_to_end_through_stripe(start_worker, stripe_server, on_stripe):
    """One booking at a time, from booking_create to completed, through the Stripe adapter
    and the local server (sandbox for the other providers); written to the artifacts."""
    start_worker("stripe", extra_env=on_stripe, concurrency=1)
    room = ResourceFactory(code="garden-room", capacity=100)
    warm = book(room, token="pm_card_visa")
    wait_settled([warm], timeout=60)
    seconds = []
    for i in range(10):
        started = time.monotonic()
        booking = book(room, token="pm_card_visa", email=f"t{i}@example.com")
        wait_settled([booking], timeout=60)
        seconds.append(time.monotonic() - started)
    booking = Booking.objects.get(pk=booking.pk)
    assert booking.state == "completed"
    record(
        "stripe end to end (10 bookings, one at a time)",
        booking,
        statistics.median(seconds),
        median_ms=round(statistics.median(seconds) * 1000),
        max_ms=round(max(seconds) * 1000),
        min_ms=round(min(seconds) * 1000),
    )
    assert len(stripe_server.holds()) == 11


# --- SMTP --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["refused", "timeout"])
def test_an_smtp_server_that_refuses_or_times_out_is_retried_into_one_message(
    case, start_worker, smtp_server, on_smtp
):
    if case == "refused":
        smtp_server.refuse = 2
    else:
        smtp_server.hang = 1
    start_worker("smtp", extra_env=on_smtp)
    started = time.monotonic()
    booking = book(ResourceFactory(code="garden-room", capacity=5), email="ada@example.com")
    [booking] = wait_settled([booking], timeout=90)
    record(f"smtp {case}", booking, time.monotonic() - started)
    assert booking.state == "completed"
    assert smtp_server.delivered() == [("ada@example.com", smtp_server.messages[0]["Subject"])]
    assert_invariants([booking])


def test_a_worker_killed_after_the_server_accepted_resends_the_same_message(
    start_worker, smtp_server, on_smtp
):
    """The worker dies after the SMTP server accepted the confirmation (waiting for the answer
    to QUIT), before recording it. The step runs again and hands over the same message: the
    same Message-ID, so mail systems show one message. SMTP has no idempotency key: this is the
    one window where a copy can travel twice."""
    smtp_server.kill_sender_after_accepting = 1
    start_worker("smtp", extra_env=on_smtp)
    started = time.monotonic()
    booking = book(ResourceFactory(code="garden-room", capacity=5), email="ada@example.com")
    [booking] = settle_with_sweeper([booking], timeout=120)
    assert smtp_server.killed, "the sending process was never killed: nothing was tested"
    ids = [m["Message-ID"] for m in smtp_server.messages]
    record("smtp worker killed after acceptance", booking, time.monotonic() - started,
           copies=len(ids), message_ids=len(set(ids)))  # fmt: skip
    assert booking.state == "completed"
    sent = EmailRecord.objects.get(idempotency_key=f"{booking.saga_id}:send_email:action")
    assert set(ids) == {sent.message_id} and sent.status == "sent"
    assert_invariants([booking])
