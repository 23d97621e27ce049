"""The outbox, signing, rotation, SSRF and the attempt's bookkeeping, against the real database
and a real HTTP receiver; signatures are checked with the independent `standardwebhooks`
library, never with our own code."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
import standardwebhooks
from django.db import transaction
from django.utils import timezone

from bookings.api.serializers import BookingSerializer
from bookings.models import Booking
from bookings.services import booking_resolve
from sagas.models import Saga
from webhooks import services, signing
from webhooks.models import Attempt, Delivery, Endpoint, Event, Notice

from ..factories import UserFactory
from ..helpers import book, drive
from .receiver import Receiver

pytestmark = pytest.mark.django_db

FORBIDDEN = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.5.5.5:8080/hook", "loopback"),
    ("http://localhost/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://10.1.2.3/hook", "private"),
    ("http://172.16.0.1/hook", "private"),
    ("http://192.168.1.10/hook", "private"),
    ("http://[fd00::1]/hook", "private"),
    ("http://0.0.0.0/hook", "private"),
    ("http://100.64.0.1/hook", "public address"),
    ("http://224.0.0.1/hook", "public address"),
]


@pytest.fixture
def no_private(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    return settings


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def endpoint_for(owner, url: str, types: list[str] | None = None) -> Endpoint:
    return services.endpoint_create(owner=owner, url=url, event_types=types or [])


def verify(secret: str, received) -> dict:
    """The independent library's verdict (raises if no signature matches)."""
    return standardwebhooks.Webhook(secret).verify(received.body, received.headers)


# --- the outbox ----------------------------------------------------------------------------


def test_a_new_booking_writes_its_created_event_and_one_delivery_per_matching_endpoint(
    resource, receiver
):
    owner, other = UserFactory(), UserFactory()
    wanted = endpoint_for(owner, receiver.url, ["booking.created"])
    endpoint_for(owner, receiver.url, ["booking.completed"])  # another type only
    endpoint_for(owner, receiver.url)  # every type
    disabled = endpoint_for(owner, receiver.url)
    services.endpoint_update(endpoint=disabled, enabled=False)
    endpoint_for(other, receiver.url)  # another client's

    booking = book(resource, owner=owner)
    event = Event.objects.get()
    assert (event.type, event.subject_id, event.sequence) == ("booking.created", str(booking.pk), 1)
    assert event.owner == owner
    fresh = Booking.objects.get(pk=booking.pk)
    assert event.data["id"] == str(booking.pk) and event.data["state"] == fresh.state
    assert set(event.data) == set(BookingSerializer(fresh).data)
    assert len(event.data["timeline"]) == 1  # the first attempt, scheduled with the booking
    deliveries = Delivery.objects.filter(event=event)
    assert deliveries.count() == 2 and wanted.pk in {d.endpoint_id for d in deliveries}
    assert all(d.status == "pending" and d.attempts == 0 for d in deliveries)


def test_each_transition_a_client_cares_about_is_one_event_numbered_in_order(resource):
    owner = UserFactory()
    done = book(resource, owner=owner)
    drive(done.saga_id)
    declined = book(resource, owner=owner, token="tok_declined")
    drive(declined.saga_id)
    parked = book(resource, owner=owner, email="bounce@example.com")
    drive(parked.saga_id)

    def types(b: Booking) -> list[tuple[int, str]]:
        return list(
            Event.objects.filter(subject_id=str(b.pk))
            .order_by("sequence")
            .values_list("sequence", "type")
        )

    assert types(done) == [(1, "booking.created"), (2, "booking.completed")]
    assert types(declined) == [(1, "booking.created"), (2, "booking.cancelled")]
    cancelled = Event.objects.get(subject_id=str(declined.pk), type="booking.cancelled")
    assert cancelled.data["reason"] == "payment_declined"
    assert cancelled.data["state"] == "cancelled"
    assert types(parked) == [(1, "booking.created"), (2, "booking.requires_attention")]
    attention = Event.objects.get(type="booking.requires_attention")
    assert (
        "could not send the confirmation e-mail to bounce@example.com"
        in (attention.data["message"])
    )
    booking_resolve(
        booking=Booking.objects.get(pk=parked.pk), outcome="completed", actor="op", reason="fixed"
    )
    assert types(parked)[-1] == (3, "booking.resolved")
    assert Event.objects.get(type="booking.resolved").data["state"] == "completed"


def test_a_rolled_back_transition_emits_nothing(resource, django_capture_on_commit_callbacks):
    owner = UserFactory()
    endpoint_for(owner, "http://127.0.0.1:9/hook")
    parked = book(resource, owner=owner, email="bounce@example.com")
    drive(parked.saga_id)
    before = set(Event.objects.values_list("id", flat=True))
    deliveries_before = Delivery.objects.count()

    class Abort(Exception):
        pass

    with (
        django_capture_on_commit_callbacks() as sent,
        pytest.raises(Abort),
        transaction.atomic(),
    ):
        booking_resolve(
            booking=Booking.objects.get(pk=parked.pk),
            outcome="cancelled",
            actor="op",
            reason="refunded",
        )
        assert Event.objects.filter(type="booking.resolved").exists()  # written, then...
        raise Abort  # ...the transaction that moved the booking rolls back
    with (
        django_capture_on_commit_callbacks() as created,
        pytest.raises(Abort),
        transaction.atomic(),
    ):
        book(resource, owner=owner)
        raise Abort
    assert set(Event.objects.values_list("id", flat=True)) == before
    assert Delivery.objects.count() == deliveries_before
    assert sent == [] and created == []  # no message was sent for them either
    assert Booking.objects.get(pk=parked.pk).state == "requires_attention"
    assert Saga.objects.get(pk=parked.saga_id).status == "requires_attention"


# --- signing and rotation ------------------------------------------------------------------


def test_signatures_verify_with_the_standard_webhooks_library(resource, receiver):
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    book(resource, owner=owner)
    delivery = Delivery.objects.get()
    assert services.deliver(delivery.pk) == "delivered"
    [got] = receiver.received
    payload = verify(endpoint.secret, got)
    event = Event.objects.get()
    assert got.headers["webhook-id"] == str(event.id) == payload["id"]
    assert payload["type"] == "booking.created" and payload["sequence"] == 1
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verify(signing.new_secret(), got)
    tampered = type(got)(got.headers, got.body.replace(b"created", b"cancelled"), got.at, 200)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verify(endpoint.secret, tampered)


def test_during_a_rotation_overlap_both_signatures_are_sent_and_verify(resource, receiver):
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    old = endpoint.secret
    endpoint = services.endpoint_rotate_secret(endpoint=endpoint, overlap_seconds=3600)
    new = endpoint.secret
    assert new != old and new.startswith("whsec_")
    book(resource, owner=owner)
    services.deliver(Delivery.objects.get().pk)
    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verify(old, got) == verify(new, got)
    # Once the overlap is over, only the new secret signs.
    Endpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    book(resource, owner=owner, email="second@example.com")
    services.deliver(Delivery.objects.order_by("-id").first().pk)
    second = receiver.received[1]
    assert len(second.headers["webhook-signature"].split(" ")) == 1
    verify(new, second)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verify(old, second)


# --- SSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url,why", FORBIDDEN)
def test_forbidden_addresses_are_refused_at_creation(no_private, url, why):
    with pytest.raises(services.WebhookError) as refused:
        endpoint_for(UserFactory(), url)
    assert why in refused.value.fields["url"][0]
    assert not Endpoint.objects.exists()


def test_http_is_refused_where_https_is_required(settings):
    settings.WEBHOOK_REQUIRE_HTTPS = True
    with pytest.raises(services.WebhookError) as refused:
        endpoint_for(UserFactory(), "http://93.184.215.14/hook")
    assert refused.value.fields["url"] == ["Use an https URL."]
    assert endpoint_for(UserFactory(), "https://93.184.215.14/hook").url.startswith("https")


@pytest.mark.parametrize("url,why", [u for u in FORBIDDEN if "localhost" not in u[0]])
def test_forbidden_addresses_are_refused_at_delivery_too(resource, settings, url, why):
    """An endpoint saved while its address was allowed (here: by settings) is not called once it
    is not: each attempt checks again."""
    owner = UserFactory()
    settings.WEBHOOK_ALLOWED_NETWORKS = ["0.0.0.0/0", "::/0"]
    endpoint_for(owner, url)
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    book(resource, owner=owner)
    assert services.deliver(Delivery.objects.get().pk) == "retry in 1 s"
    attempt = Attempt.objects.get()
    assert attempt.status == "failed" and attempt.response_status is None
    assert attempt.error.startswith("refused: ") and why in attempt.error


def test_a_name_that_resolves_to_a_private_address_at_delivery_is_refused(
    resource, monkeypatch, no_private, receiver
):
    """DNS rebinding: the name resolved to a public address when the endpoint was saved, to a
    private one when the attempt is made; the attempt connects to nothing."""
    answers = iter(["93.184.215.14", "10.0.0.7"])
    real = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):
        if host != "hooks.example.com":
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    owner = UserFactory()
    endpoint_for(owner, "https://hooks.example.com/hook")
    book(resource, owner=owner)
    services.deliver(Delivery.objects.get().pk)
    assert Attempt.objects.get().error == "refused: 10.0.0.7 is in a private range."


# --- attempts, retries, circuit, disabling -------------------------------------------------


def test_every_attempt_is_recorded_and_retried_on_the_schedule_with_the_same_id(
    resource, receiver, settings
):
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 10]
    receiver.plan = [500, 503]
    owner = UserFactory()
    endpoint_for(owner, receiver.url)
    book(resource, owner=owner)
    delivery = Delivery.objects.get()
    assert services.deliver(delivery.pk) == "retry in 5 s"
    assert services.deliver(delivery.pk) == "early"  # not due yet: nothing sent
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert services.deliver(delivery.pk) == "retry in 10 s"
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert services.deliver(delivery.pk) == "delivered"
    assert services.deliver(delivery.pk) == "done"  # a duplicate message: nothing sent
    attempts = list(Attempt.objects.values_list("number", "status", "response_status"))
    assert attempts == [(1, "failed", 500), (2, "failed", 503), (3, "succeeded", 200)]
    assert Attempt.objects.first().response_body == "answered 500"
    assert all(a.duration_ms is not None for a in Attempt.objects.all())
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len(receiver.received) == 3


def test_a_delivery_gives_up_after_the_last_retry(resource, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [1]
    owner = UserFactory()
    endpoint_for(owner, "http://127.0.0.1:9/hook")  # the discard port: refused
    book(resource, owner=owner)
    delivery = Delivery.objects.get()
    assert services.deliver(delivery.pk) == "retry in 1 s"
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert services.deliver(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert delivery.last_error == "connection refused"


def test_the_circuit_opens_after_failures_in_a_row_and_defers_without_spending_retries(
    resource, settings
):
    settings.WEBHOOK_CIRCUIT = {"failure_threshold": 2, "cool_down": 30}
    owner = UserFactory()
    endpoint = endpoint_for(owner, "http://127.0.0.1:9/hook")
    for i in range(3):
        book(resource, owner=owner, email=f"g{i}@example.com")
    first, second, third = Delivery.objects.order_by("id")
    services.deliver(first.pk)
    services.deliver(second.pk)
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 2 and endpoint.circuit_open_until is not None
    assert services.deliver(third.pk) == "deferred"
    third.refresh_from_db()
    assert third.attempts == 0 and third.next_attempt_at >= endpoint.circuit_open_until
    assert not Attempt.objects.filter(delivery=third).exists()


def test_an_endpoint_at_its_concurrency_limit_defers_the_next_attempt(resource, settings, receiver):
    settings.WEBHOOK_ENDPOINT_CONCURRENCY = 1
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    book(resource, owner=owner)
    delivery = Delivery.objects.get()
    with services.endpoint_slot(endpoint, 1) as free:  # an attempt in flight in another worker
        assert free
        assert services.deliver(delivery.pk) == "deferred"
    delivery.refresh_from_db()
    assert delivery.attempts == 0 and delivery.next_attempt_at > timezone.now()
    assert not Attempt.objects.exists() and receiver.received == []
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert services.deliver(delivery.pk) == "delivered"  # the slot was given back


def test_an_endpoint_failing_for_days_is_disabled_and_its_owner_and_operators_are_told(
    resource, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    owner = UserFactory(email="client@example.com")
    endpoint = endpoint_for(owner, "http://127.0.0.1:9/hook")
    Endpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER + 1),
        consecutive_failures=40,
    )
    book(resource, owner=owner)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.deliver(Delivery.objects.get().pk) == "failed"
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "every attempt failed for 5.0 days" in endpoint.disabled_reason
    notice = Notice.objects.get(kind="endpoint_disabled")
    assert notice.endpoint == endpoint and endpoint.url in notice.message
    assert {tuple(m.to) for m in mailoutbox} == {("client@example.com",), ("ops@example.com",)}


def test_a_delivery_with_no_outcome_is_sent_again_by_the_sweeper_but_not_forever(
    resource, receiver, settings, django_capture_on_commit_callbacks
):
    owner = UserFactory()
    endpoint_for(owner, receiver.url)
    book(resource, owner=owner)
    book(resource, owner=owner, email="poison@example.com")
    lost, poison = Delivery.objects.order_by("id")
    long_ago = timezone.now() - timedelta(minutes=5)
    # Sent five minutes ago and no outcome since: lost, or its worker died mid-attempt.
    Delivery.objects.update(dispatched_at=long_ago)
    Delivery.objects.filter(pk=poison.pk).update(redispatches=settings.WEBHOOK_MAX_DISPATCHES)
    with django_capture_on_commit_callbacks() as sent:
        assert services.sweep() == 1
    assert len(sent) == 1
    lost.refresh_from_db()
    poison.refresh_from_db()
    assert lost.redispatches == 1 and "no outcome" in lost.last_error
    assert poison.status == "failed" and "without an outcome" in poison.last_error
    assert services.deliver(lost.pk) == "delivered"
    assert list(Attempt.objects.values_list("number", "status")) == [(1, "succeeded")]
    with django_capture_on_commit_callbacks() as again:
        assert services.sweep() == 0
    assert again == []


def test_redeliver_sends_again_with_a_fresh_budget_and_records_who_and_why(resource, receiver):
    owner = UserFactory()
    endpoint_for(owner, receiver.url)
    book(resource, owner=owner)
    delivery = Delivery.objects.get()
    services.deliver(delivery.pk)
    with pytest.raises(services.WebhookError):
        services.redeliver(deliveries=[delivery], actor="op", reason=" ")
    assert services.redeliver(deliveries=[delivery], actor="op", reason="client lost it") == 1
    assert services.deliver(delivery.pk) == "delivered"
    assert [r.headers["webhook-id"] for r in receiver.received] == [str(delivery.event_id)] * 2
    notice = Notice.objects.get(kind="redelivered")
    assert notice.actor == "op" and "client lost it" in notice.message


def test_a_later_event_of_a_booking_waits_for_the_earlier_ones_first_attempt(resource, receiver):
    owner = UserFactory()
    endpoint_for(owner, receiver.url)
    booking = book(resource, owner=owner)
    drive(booking.saga_id)
    created, completed = Delivery.objects.order_by("event__sequence")
    assert completed.event.type == "booking.completed"
    assert services.deliver(completed.pk) == "deferred"
    assert services.deliver(created.pk) == "delivered"
    Delivery.objects.filter(pk=completed.pk).update(next_attempt_at=timezone.now())
    assert services.deliver(completed.pk) == "delivered"
    assert [r.json["sequence"] for r in receiver.received] == [1, 2]
