"""Deliveries end to end: real Celery workers on the real broker and database (the webhooks
queue and, where bookings must run, the sagas' queue), and a real HTTP receiver started by the
test. Signatures are verified with the independent `standardwebhooks` library."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import timedelta

import pytest
import standardwebhooks
from celery import current_app
from django.conf import settings

from bookings.models import Booking
from bookings.services import booking_resolve
from webhooks import services
from webhooks.models import Attempt, Delivery, Endpoint

from ..factories import ResourceFactory, UserFactory
from ..helpers import book, wait_for, wait_settled
from .receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def both_queues() -> str:
    return f"{settings.CELERY_TASK_DEFAULT_QUEUE},{settings.WEBHOOK_QUEUE}"


def subscribe(owner, receiver: Receiver, types: list[str] | None = None) -> Endpoint:
    return services.endpoint_create(owner=owner, url=receiver.url, event_types=types or [])


def attempts_of(delivery: Delivery) -> list[Attempt]:
    return list(Attempt.objects.filter(delivery=delivery).order_by("id"))


def test_each_event_arrives_once_in_order_per_booking_and_verifies(start_worker, receiver):
    start_worker("wh-e2e", queues=both_queues(), concurrency=2)
    owner = UserFactory()
    endpoint = subscribe(owner, receiver)
    room = ResourceFactory(code="garden-room", capacity=5)
    happy = book(room, owner=owner)
    declined = book(room, owner=owner, token="tok_declined", email="d@example.com")
    bounced = book(room, owner=owner, email="bounce@example.com")
    wait_settled([happy, declined, bounced], timeout=90)
    booking_resolve(
        booking=Booking.objects.get(pk=bounced.pk), outcome="completed", actor="op", reason="ok"
    )
    received = receiver.wait_for(7, timeout=60)
    time.sleep(1)  # nothing more may come
    assert len(receiver.received) == 7

    hook = standardwebhooks.Webhook(endpoint.secret)
    arrived: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in received:
        payload = hook.verify(r.body, r.headers)  # raises unless a signature matches
        assert r.headers["webhook-id"] == payload["id"]
        arrived[payload["subject"]].append((payload["sequence"], payload["type"]))
    assert arrived == {
        str(happy.pk): [(1, "booking.created"), (2, "booking.completed")],
        str(declined.pk): [(1, "booking.created"), (2, "booking.cancelled")],
        str(bounced.pk): [
            (1, "booking.created"),
            (2, "booking.requires_attention"),
            (3, "booking.resolved"),
        ],
    }
    assert len({r.headers["webhook-id"] for r in received}) == 7  # once each
    assert Delivery.objects.filter(status="succeeded").count() == 7


def test_500_then_timeout_then_refused_then_recovered_arrives_with_the_same_id_after_the_delays(
    start_worker, receiver
):
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    start_worker("wh-retry", queues=settings.WEBHOOK_QUEUE)
    receiver.plan = [500, "slow"]  # "slow": answers after the sender's timeout
    owner = UserFactory()
    subscribe(owner, receiver, ["booking.created"])
    book(ResourceFactory(code="garden-room"), owner=owner)
    delivery = Delivery.objects.get()

    wait_for(lambda: len(attempts_of(delivery)) == 2, timeout=30, what="the timed-out attempt")
    receiver.stop()  # the third attempt finds the port closed
    wait_for(lambda: len(attempts_of(delivery)) == 3, timeout=30, what="the refused attempt")
    receiver.start()
    wait_for(
        lambda: Delivery.objects.get(pk=delivery.pk).status == "succeeded",
        timeout=30,
        what="the delivery",
    )
    attempts = attempts_of(delivery)
    assert [(a.status, a.response_status) for a in attempts] == [
        ("failed", 500),
        ("failed", None),
        ("failed", None),
        ("succeeded", 200),
    ]
    assert attempts[1].error.startswith("timed out")
    assert attempts[2].error == "connection refused"
    for before, after, delay in zip(attempts, attempts[1:], schedule, strict=False):
        ended = before.started_at + timedelta(milliseconds=before.duration_ms or 0)
        assert after.started_at - ended >= timedelta(seconds=delay) - timedelta(milliseconds=50)
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert ids == {str(delivery.event_id)}
    assert [r.answered for r in receiver.received] == [500, "slow", 200]


def test_a_worker_killed_mid_delivery_delivers_again_with_the_same_id(start_worker, receiver):
    receiver.plan = ["slow"]
    receiver.slow_seconds = 1.5  # within the timeout: the worker is waiting for the answer
    doomed = start_worker("wh-doomed", queues=settings.WEBHOOK_QUEUE)
    owner = UserFactory()
    subscribe(owner, receiver, ["booking.created"])
    book(ResourceFactory(code="garden-room"), owner=owner)
    delivery = Delivery.objects.get()
    receiver.wait_for(1, timeout=30)
    doomed.kill()  # SIGKILL while the request is in flight: no outcome recorded, no ack
    assert Delivery.objects.get(pk=delivery.pk).status == "pending"
    assert not Attempt.objects.exists()

    start_worker("wh-heir", queues=settings.WEBHOOK_QUEUE)

    def delivered() -> bool:
        services.sweep()  # what Celery beat runs every few seconds
        return Delivery.objects.get(pk=delivery.pk).status == "succeeded"

    wait_for(delivered, timeout=60, what="the delivery after the kill")
    assert [r.headers["webhook-id"] for r in receiver.received] == [str(delivery.event_id)] * 2
    assert [a.status for a in attempts_of(delivery)] == ["succeeded"]
    assert Delivery.objects.get(pk=delivery.pk).redispatches >= 1


def test_a_message_lost_after_commit_is_sent_again_by_the_sweeper(start_worker, receiver, settings):
    owner = UserFactory()
    subscribe(owner, receiver, ["booking.created"])
    book(ResourceFactory(code="garden-room"), owner=owner)  # its message leaves on commit...
    with current_app.connection_for_write() as conn:  # ...and is lost before any worker runs
        conn.default_channel.queue_purge(settings.WEBHOOK_QUEUE)
    start_worker("wh-sweep", queues=settings.WEBHOOK_QUEUE)
    time.sleep(2)
    assert receiver.received == []
    settings.WEBHOOK_REDISPATCH_AFTER = 0
    assert services.sweep() == 1
    [got] = receiver.wait_for(1, timeout=30)
    assert got.headers["webhook-id"] == str(Delivery.objects.get().event_id)


def test_an_address_refused_at_delivery_is_never_called(start_worker, receiver):
    """The endpoint was saved while 127.0.0.1 was allowed; the worker no longer allows it (its
    environment): the attempt is refused before connecting, and retried later."""
    start_worker(
        "wh-ssrf", queues=settings.WEBHOOK_QUEUE, extra_env={"WEBHOOK_ALLOWED_NETWORKS": ""}
    )
    owner = UserFactory()
    subscribe(owner, receiver, ["booking.created"])
    book(ResourceFactory(code="garden-room"), owner=owner)
    delivery = Delivery.objects.get()
    wait_for(lambda: len(attempts_of(delivery)) >= 1, timeout=30, what="the refused attempt")
    attempt = attempts_of(delivery)[0]
    assert attempt.error == "refused: 127.0.0.1 is a loopback address."
    assert receiver.received == []
