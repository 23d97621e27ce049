"""Faults against real worker processes: a worker SIGKILLed mid-step, a crash between the
provider call and the commit of its outcome, messages lost after commit, every message
delivered several times. Each ends with the effect exactly once."""

import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from celery import current_app
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from bookings.providers.models import EmailRecord, FraudScreeningRecord, InventoryReservation
from sagas import recovery
from sagas.models import SagaStep
from sandbox.models import PaymentAuthorization
from tests.faults.injection import messages_lost

from ..factories import ResourceFactory
from ..helpers import (
    assert_invariants,
    book,
    reload,
    settle_with_sweeper,
    wait_for,
    wait_settled,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def sweep_as_if_later(minutes: float = 5) -> list[int]:
    """The periodic sweeper, run as if the leases had run out (no need to wait for them)."""
    return recovery.sweep(now=timezone.now() + timedelta(minutes=minutes)).redispatched


def test_worker_killed_mid_step_is_recovered_with_the_effect_once(start_worker):
    slow = start_worker(
        "doomed", concurrency=1, faults={"pause_after_action": {"preauthorize.action": 60}}
    )
    booking = book(ResourceFactory(code="garden-room"))
    # The authorization is made, the worker sleeps before recording it: kill it there.
    wait_for(
        lambda: PaymentAuthorization.objects.filter(status="authorized").exists(),
        timeout=30,
        what="the authorization",
    )
    slow.kill()
    assert reload(booking).state == "preauthorizing"
    start_worker("rescuer")
    # RabbitMQ requeues the dead worker's unacknowledged message at once; Redis and the
    # filesystem queue do not (no acknowledgement emulation): there the sweeper re-sends it.
    [booking] = settle_with_sweeper([booking], timeout=60)
    assert booking.state == "completed"
    auth = PaymentAuthorization.objects.get()
    assert auth.status == "authorized" and auth.attempts == 1  # the second call was a replay
    row = SagaStep.objects.get(saga_id=booking.saga_id, name="preauthorize")
    assert row.status == "succeeded"
    assert_invariants([booking])


def waiting_messages() -> int:
    """Messages in the test queue that no worker has taken."""
    with current_app.connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare(
                settings.CELERY_TASK_DEFAULT_QUEUE, passive=True
            ).message_count
        except conn.channel_errors:  # Redis keeps no empty queue: not found is empty
            return 0


def test_a_worker_killed_while_holding_a_delayed_retry_still_makes_it_once(start_worker):
    """A retry waits, as a countdown message, in the worker that took it. That worker is killed:
    RabbitMQ puts the message back; Redis and the filesystem queue do not, and the sweeper sends
    the attempt again once its lease runs out. Either way the retry is made, once."""
    later = {"booking.preauthorize": {"initial_delay": 3, "max_delay": 3, "jitter": 0}}
    env = {"SAGA_STEP_SETTINGS_OVERRIDES": json.dumps(later)}
    holder = start_worker("holder", pool="solo", extra_env=env)
    booking = book(ResourceFactory(code="garden-room"), token="tok_flaky")  # fails twice
    wait_for(
        lambda: SagaStep.objects.filter(
            saga_id=booking.saga_id, name="preauthorize", status=SagaStep.Status.RETRYING
        ).exists(),
        timeout=30,
        what="the first authorization attempt's failure",
    )
    time.sleep(1)  # the retry is due 3 s after the failure: the worker holds it, waiting
    assert waiting_messages() == 0
    holder.kill()
    start_worker("rescuer", extra_env=env)
    [booking] = settle_with_sweeper([booking], timeout=60)
    assert booking.state == "completed"
    auth = PaymentAuthorization.objects.get()
    assert auth.status == "authorized" and auth.attempts == 3  # two timeouts, then the hold
    attempts = SagaStep.objects.filter(saga_id=booking.saga_id, name="preauthorize")
    assert [a.status for a in attempts.order_by("attempt")] == ["retrying", "retrying", "succeeded"]
    assert_invariants([booking])


def test_crash_between_provider_call_and_commit_is_replayed_not_repeated(start_worker):
    marker = Path(tempfile.mkdtemp()) / "crashed"
    start_worker(
        "crashy",
        concurrency=1,
        faults={"exit_after_action": ["confirm.action"], "exit_marker": str(marker)},
    )
    booking = book(ResourceFactory(code="garden-room", capacity=1))
    wait_for(marker.exists, timeout=30, what="the injected crash")

    # The broker redelivers the message of the dead pool process (reject on worker lost), or
    # the sweeper sends it again: either way the reservation is replayed, not repeated.
    [booking] = settle_with_sweeper([booking], timeout=60)
    assert booking.state == "completed"
    assert InventoryReservation.objects.filter(status="reserved").count() == 1
    assert_invariants([booking])


def test_messages_lost_after_commit_are_sent_again_by_the_sweeper(start_worker):
    start_worker("w")
    room = ResourceFactory(code="garden-room")
    with messages_lost():
        bookings = [book(room, email=f"g{i}@example.com") for i in range(3)]
    assert all(reload(b).state == "fraud_check" for b in bookings)
    assert not FraudScreeningRecord.objects.exists()  # nothing ran: the messages are gone
    assert len(sweep_as_if_later()) == 3
    settled = wait_settled(bookings, timeout=60)
    assert [b.state for b in settled] == ["completed"] * 3
    assert_invariants(bookings)


@override_settings(SAGA_FAULTS={"duplicate_messages": 3})
def test_every_step_message_delivered_three_times_has_each_effect_once(start_worker):
    start_worker("dup", concurrency=3, faults={"duplicate_messages": 3})
    room = ResourceFactory(code="garden-room", capacity=5)
    bookings = [book(room, email=f"g{i}@example.com") for i in range(4)]
    bookings.append(book(ResourceFactory(code="sold-out", capacity=0)))
    settled = wait_settled(bookings, timeout=90)
    assert sorted(b.state for b in settled) == ["cancelled"] + ["completed"] * 4
    assert FraudScreeningRecord.objects.count() == 5
    assert PaymentAuthorization.objects.filter(status="authorized").count() == 4
    assert PaymentAuthorization.objects.filter(status="voided").count() == 1
    assert EmailRecord.objects.filter(status="sent").count() == 4
    for b in settled:
        succeeded = SagaStep.objects.filter(saga_id=b.saga_id, status="succeeded")
        names = list(succeeded.values_list("name", "direction"))
        assert len(names) == len(set(names)), f"{b} recorded a step twice: {names}"
    assert_invariants(bookings)
