"""The outbox, signing, rotation, SSRF and the attempt's bookkeeping, against the real database
and a real HTTP receiver; signatures are checked with the independent `standardwebhooks`
library, never with our own code."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import standardwebhooks
from celery.signals import after_task_publish
from django.db import connection, transaction
from django.utils import timezone

from bookings.api.serializers import BookingSerializer
from bookings.models import Booking
from bookings.services import booking_resolve
from sagas.models import Saga
from webhooks import services, signing, transport
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
    assert services.drain(endpoint.pk) == {delivery.pk: "delivered"}
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
    services.drain(endpoint.pk)
    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verify(old, got) == verify(new, got)
    # Once the overlap is over, only the new secret signs.
    Endpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    book(resource, owner=owner, email="second@example.com")
    services.drain(endpoint.pk)
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
    endpoint = endpoint_for(owner, url)
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    book(resource, owner=owner)
    assert services.drain(endpoint.pk) == {Delivery.objects.get().pk: "retry in 1 s"}
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
    endpoint = endpoint_for(owner, "https://hooks.example.com/hook")
    book(resource, owner=owner)
    services.drain(endpoint.pk)
    assert Attempt.objects.get().error == "refused: 10.0.0.7 is in a private range."


# --- attempts, retries, circuit, disabling -------------------------------------------------


def due_now(*deliveries: Delivery) -> None:
    """Make the deliveries' next attempts due now (the tests do not wait for the schedule)."""
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        next_attempt_at=timezone.now()
    )


def test_every_attempt_is_recorded_and_retried_on_the_schedule_with_the_same_id(
    resource, receiver, settings
):
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 10]
    receiver.plan = [500, 503]
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    book(resource, owner=owner)
    delivery = Delivery.objects.get()
    assert services.drain(endpoint.pk) == {delivery.pk: "retry in 5 s"}
    assert services.drain(endpoint.pk) == {}  # not due yet: nothing sent
    due_now(delivery)
    assert services.drain(endpoint.pk) == {delivery.pk: "retry in 10 s"}
    due_now(delivery)
    assert services.drain(endpoint.pk) == {delivery.pk: "delivered"}
    assert services.drain(endpoint.pk) == {}  # a duplicate wake: nothing sent
    attempts = list(Attempt.objects.values_list("number", "status", "response_status"))
    assert attempts == [(1, "failed", 500), (2, "failed", 503), (3, "succeeded", 200)]
    assert Attempt.objects.first().response_body == "answered 500"
    assert all(a.duration_ms is not None for a in Attempt.objects.all())
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len(receiver.received) == 3


def test_a_delivery_gives_up_after_the_last_retry(resource, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [1]
    owner = UserFactory()
    endpoint = endpoint_for(owner, "http://127.0.0.1:9/hook")  # the discard port: refused
    book(resource, owner=owner)
    delivery = Delivery.objects.get()
    assert services.drain(endpoint.pk) == {delivery.pk: "retry in 1 s"}
    due_now(delivery)
    assert services.drain(endpoint.pk) == {delivery.pk: "failed"}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert delivery.last_error == "connection refused"


def test_a_drain_sends_an_endpoints_deliveries_in_order_over_one_connection(resource):
    receiver = Receiver(keep_alive=True)
    try:
        owner = UserFactory()
        endpoint = endpoint_for(owner, receiver.url)
        for i in range(3):
            book(resource, owner=owner, email=f"g{i}@example.com")
        deliveries = list(Delivery.objects.order_by("id"))
        assert services.drain(endpoint.pk) == {d.pk: "delivered" for d in deliveries}
    finally:
        receiver.stop()
    assert [r.headers["webhook-id"] for r in receiver.received] == [
        str(d.event_id) for d in deliveries
    ]
    assert len({r.client_port for r in receiver.received}) == 1  # one kept-alive connection
    assert Attempt.objects.filter(status="succeeded").count() == 3


def test_each_attempt_of_a_batch_records_when_it_was_made(resource):
    receiver = Receiver(keep_alive=True, plan=["slow", "slow"], slow_seconds=0.3)
    try:
        owner = UserFactory()
        endpoint = endpoint_for(owner, receiver.url)
        for i in range(3):
            book(resource, owner=owner, email=f"g{i}@example.com")
        services.drain(endpoint.pk)
    finally:
        receiver.stop()
    attempts = list(Attempt.objects.order_by("delivery_id"))
    assert len(attempts) == len(receiver.received) == 3
    for attempt, received in zip(attempts, receiver.received, strict=True):
        # Made just before the receiver got it, not when the batch was recorded.
        lag = received.at - attempt.started_at.timestamp()
        assert 0 <= lag < 0.25, (attempt.number, lag)  # recorded late, it would be -0.3 s
    assert [a.duration_ms >= 300 for a in attempts] == [True, True, False]


@pytest.fixture
def tls_certificate(tmp_path, monkeypatch):
    """A self-signed certificate for 127.0.0.1 that the sender trusts (SSL_CERT_FILE), made by
    the openssl command; returns an SSLContext for a server presenting it."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,digitalSignature,keyCertSign"],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_receiver_that_drips_its_answer_times_out_at_the_attempts_timeout(scheme, request):
    listener = socket.create_server(("127.0.0.1", 0))
    if scheme == "https":
        tls = request.getfixturevalue("tls_certificate")
        listener = tls.wrap_socket(listener, server_side=True)
    port = listener.getsockname()[1]
    answers = [b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"] * 2

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)  # a first request: answered at once
            conn.sendall(answers[0])
            conn.recv(65536)  # the second: its answer drips
            for byte in answers[1]:
                time.sleep(0.1)  # each read gets a byte well within the timeout
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return  # the sender gave up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"{scheme}://127.0.0.1:{port}/hook"
    sender = transport.Sender(url, connect_timeout=1, timeout=1)
    try:
        assert sender.post({"webhook-id": "a"}, b"{}").status == 200
        started = time.monotonic()
        answer = sender.post({"webhook-id": "b"}, b"{}")
    finally:
        sender.close()
        listener.close()
    assert answer.status is None and answer.error.startswith("timed out")
    assert time.monotonic() - started < 1.5  # the whole answer would have taken 3.7 s


def test_a_kept_alive_connection_the_receiver_closed_is_replaced_without_losing_the_request():
    receiver = Receiver(keep_alive=True, close_after_answer=True)
    sender = transport.Sender(receiver.url, connect_timeout=1, timeout=2)
    try:
        first = sender.post({"webhook-id": "a"}, b"{}")
        # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm would
        # hold the body of each request after the first until the receiver's delayed ACK.
        assert sender.conn is not None and sender.conn.sock.getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        time.sleep(0.2)  # the receiver has closed its end by now, without saying so
        second = sender.post({"webhook-id": "b"}, b"{}")
    finally:
        sender.close()
        receiver.stop()
    assert (first.status, second.status) == (200, 200)
    assert [r.headers["webhook-id"] for r in receiver.received] == ["a", "b"]
    assert receiver.received[0].client_port != receiver.received[1].client_port


@pytest.fixture
def drains_published() -> Iterator[list[tuple[str, float, bool]]]:
    """The drain messages published to the broker, as (endpoint id, countdown in seconds,
    trailing), seen through Celery's after_task_publish signal: the messages really go out."""
    published: list[tuple[str, float, bool]] = []

    def seen(sender=None, body=None, headers=None, **_):  # type: ignore[no-untyped-def]
        if sender != "webhooks.tasks.drain":
            return
        args, kwargs, _embed = body
        eta = headers.get("eta")
        delay = (datetime.fromisoformat(eta) - timezone.now()).total_seconds() if eta else 0.0
        published.append((args[0], round(max(0.0, delay), 1), kwargs.get("trailing", False)))

    after_task_publish.connect(seen, weak=False)
    try:
        yield published
    finally:
        after_task_publish.disconnect(seen)


def test_a_busy_endpoint_is_woken_at_once_then_once_for_the_events_that_follow(
    settings, drains_published
):
    settings.WEBHOOK_BATCH_WINDOW = 0.5
    published = drains_published
    endpoint, other = str(uuid.uuid4()), str(uuid.uuid4())
    services.wake([endpoint])  # the first event of the window: at once
    services.wake([endpoint, endpoint])  # the next ones: one drain at the window's end
    services.wake([endpoint, other])
    assert published == [(endpoint, 0.0, False), (endpoint, 0.5, True), (other, 0.0, False)]
    # The trailing drain starts: an event committed from now on needs a drain of its own.
    services.drain(endpoint, trailing=True)
    services.wake([endpoint])
    services.wake([endpoint])
    assert published[3:] == [(endpoint, 0.5, True)]
    services.drain(endpoint, trailing=True)
    time.sleep(1.1)  # a quiet second later: at once again
    services.wake([endpoint])
    assert published[4:] == [(endpoint, 0.0, False)]


def test_a_drain_out_of_budget_leaves_the_rest_due_for_the_next_one(
    resource, receiver, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_DRAIN_BUDGET = 0  # one attempt, then the next drain
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    for i in range(3):
        book(resource, owner=owner, email=f"g{i}@example.com")
    first, *rest = Delivery.objects.order_by("id")
    with django_capture_on_commit_callbacks() as woken:
        assert services.drain(endpoint.pk) == {first.pk: "delivered"}
    assert len(woken) == 1  # the next drain is on its way
    for delivery in rest:
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("pending", 0)
        assert delivery.next_attempt_at <= timezone.now()  # due: not held by the drain
    with django_capture_on_commit_callbacks():
        assert services.drain(endpoint.pk) == {rest[0].pk: "delivered"}
    assert len(receiver.received) == 2


def test_a_drain_records_only_what_it_still_holds(resource, receiver, monkeypatch):
    """A delivery taken from the drain meanwhile (past its lease, by another drain or the
    sweeper) gets no outcome from it: the others of the batch are recorded."""
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    book(resource, owner=owner)
    book(resource, owner=owner, email="second@example.com")
    taken, kept = Delivery.objects.order_by("id")
    post = transport.Sender.post

    def post_while_taken(self, headers, body):
        Delivery.objects.filter(pk=taken.pk).update(dispatched_at=timezone.now())
        return post(self, headers, body)

    monkeypatch.setattr(transport.Sender, "post", post_while_taken)
    assert services.drain(endpoint.pk) == {kept.pk: "delivered"}
    taken.refresh_from_db()
    assert (taken.status, taken.attempts) == ("pending", 0)
    assert list(Attempt.objects.values_list("delivery_id", flat=True)) == [kept.pk]
    assert len(receiver.received) == 2


def test_the_circuit_opens_after_failures_in_a_row_and_defers_without_spending_retries(
    resource, settings
):
    settings.WEBHOOK_CIRCUIT = {"failure_threshold": 2, "cool_down": 30}
    owner = UserFactory()
    endpoint = endpoint_for(owner, "http://127.0.0.1:9/hook")
    for i in range(3):
        book(resource, owner=owner, email=f"g{i}@example.com")
    first, second, third = Delivery.objects.order_by("id")
    assert services.drain(endpoint.pk) == {
        first.pk: "retry in 1 s",
        second.pk: "retry in 1 s",
        third.pk: "deferred",  # the circuit opened: not attempted
    }
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 2 and endpoint.circuit_open_until is not None
    third.refresh_from_db()
    assert third.attempts == 0 and third.next_attempt_at >= endpoint.circuit_open_until
    assert not Attempt.objects.filter(delivery=third).exists()
    due_now(first, second, third)
    assert services.drain(endpoint.pk) == dict.fromkeys([first.pk, second.pk, third.pk], "deferred")
    assert Attempt.objects.count() == 2


@pytest.mark.parametrize("why", ["limit_reached", "coordination_cache_unreachable"])
def test_a_drain_without_a_slot_sends_nothing_and_another_comes_later(
    resource, settings, receiver, request, why, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_ENDPOINT_CONCURRENCY = 1
    cache = request.getfixturevalue("coordination_redis") if why != "limit_reached" else None
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    book(resource, owner=owner)
    delivery = Delivery.objects.get()
    with contextlib.ExitStack() as held:
        if cache is None:  # a drain running in another worker holds the only slot
            assert held.enter_context(services.endpoint_slot(endpoint, 1))
        else:  # no slot can be taken, so the limit could not be kept
            cache.stop()
            held.callback(cache.start)
        with django_capture_on_commit_callbacks() as woken:
            assert services.drain(endpoint.pk) == {}
    assert len(woken) == 1  # another drain, WEBHOOK_DEFER seconds later
    delivery.refresh_from_db()
    assert delivery.attempts == 0 and delivery.status == "pending"
    assert not Attempt.objects.exists() and receiver.received == []
    assert services.drain(endpoint.pk) == {delivery.pk: "delivered"}  # the slot is free again


def test_an_endpoint_failing_for_days_is_disabled_and_its_owner_and_operators_are_told(
    resource, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    owner = UserFactory(email="client@example.com")
    endpoint = endpoint_for(owner, "http://127.0.0.1:9/hook")
    Endpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER + 1),
        consecutive_failures=40,
        circuit_open_until=timezone.now() - timedelta(seconds=1),  # half open: one probe
    )
    book(resource, owner=owner)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.drain(endpoint.pk) == {Delivery.objects.get().pk: "failed"}
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "every attempt failed for 5.0 days" in endpoint.disabled_reason
    notice = Notice.objects.get(kind="endpoint_disabled")
    assert notice.endpoint == endpoint and endpoint.url in notice.message
    assert {tuple(m.to) for m in mailoutbox} == {("client@example.com",), ("ops@example.com",)}


def test_a_delivery_with_no_outcome_is_sent_again_by_the_sweeper_but_not_forever(
    resource, receiver, settings, django_capture_on_commit_callbacks
):
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    for email in ("lost@example.com", "poison@example.com", "unwoken@example.com"):
        book(resource, owner=owner, email=email)
    lost, poison, unwoken = Delivery.objects.order_by("id")
    long_ago = timezone.now() - timedelta(minutes=5)
    lease_end = long_ago + timedelta(seconds=services.drain_lease())
    # Taken by a drain five minutes ago and no outcome since: its worker died mid-attempt.
    Delivery.objects.filter(pk__in=[lost.pk, poison.pk]).update(
        dispatched_at=long_ago, next_attempt_at=lease_end
    )
    Delivery.objects.filter(pk=poison.pk).update(redispatches=settings.WEBHOOK_MAX_DISPATCHES)
    # Written five minutes ago, its drain asked for then, and never came (a lost message).
    Delivery.objects.filter(pk=unwoken.pk).update(dispatched_at=long_ago, next_attempt_at=long_ago)
    with django_capture_on_commit_callbacks() as woken:
        assert services.sweep() == 2
    assert len(woken) == 1  # one drain for their endpoint
    for delivery in (lost, poison, unwoken):
        delivery.refresh_from_db()
    assert lost.redispatches == 1 and "no outcome" in lost.last_error
    assert unwoken.redispatches == 0  # never taken: not a death
    assert poison.status == "failed" and "without an outcome" in poison.last_error
    assert services.drain(endpoint.pk) == {lost.pk: "delivered", unwoken.pk: "delivered"}
    assert list(Attempt.objects.values_list("number", "status")) == [(1, "succeeded")] * 2
    with django_capture_on_commit_callbacks() as again:
        assert services.sweep() == 0
    assert again == []


def test_a_drain_that_died_is_recognised_whatever_its_lease_was(resource, receiver, settings):
    """The sweeper counts a death by the hold itself, not by today's lease length: the settings
    may have changed since (a deploy), and a poison delivery must still stop."""
    owner = UserFactory()
    endpoint_for(owner, receiver.url)
    for email in ("lost@example.com", "poison@example.com"):
        book(resource, owner=owner, email=email)
    lost, poison = Delivery.objects.order_by("id")
    long_ago = timezone.now() - timedelta(minutes=5)
    # Held by a drain that ran with a longer budget than today's settings give.
    held_until = long_ago + timedelta(seconds=services.drain_lease() + 17)
    Delivery.objects.filter(pk__in=[lost.pk, poison.pk]).update(
        dispatched_at=long_ago, next_attempt_at=held_until
    )
    Delivery.objects.filter(pk=poison.pk).update(redispatches=settings.WEBHOOK_MAX_DISPATCHES)
    assert services.sweep() == 1
    lost.refresh_from_db()
    poison.refresh_from_db()
    assert lost.redispatches == 1 and "no outcome" in lost.last_error
    assert poison.status == "failed"


def held_by_a_dead_drain(resource, receiver, settings) -> tuple[Endpoint, Delivery, Delivery]:
    """Two deliveries to one endpoint, held five minutes ago by a drain that died: `lost`, and
    `poison`, whose drains already died WEBHOOK_MAX_DISPATCHES times."""
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    for email in ("lost@example.com", "poison@example.com"):
        book(resource, owner=owner, email=email)
    lost, poison = Delivery.objects.order_by("id")
    long_ago = timezone.now() - timedelta(minutes=5)
    Delivery.objects.filter(pk__in=[lost.pk, poison.pk]).update(
        dispatched_at=long_ago, next_attempt_at=long_ago + timedelta(seconds=90)
    )
    Delivery.objects.filter(pk=poison.pk).update(redispatches=settings.WEBHOOK_MAX_DISPATCHES)
    return endpoint, lost, poison


def test_a_busy_endpoints_next_drain_counts_the_death_and_leaves_a_poison_one_to_fail(
    resource, receiver, settings
):
    """A drain died holding deliveries; before the sweeper looks, new traffic wakes another
    drain of the endpoint. It counts the death as the sweeper would (the delivery then goes
    alone), and does not take one that reached WEBHOOK_MAX_DISPATCHES: the sweeper fails it."""
    endpoint, lost, poison = held_by_a_dead_drain(resource, receiver, settings)
    assert services.drain(endpoint.pk) == {lost.pk: "delivered"}
    lost.refresh_from_db()
    assert (lost.redispatches, lost.status) == (1, "succeeded")
    assert [r.headers["webhook-id"] for r in receiver.received] == [str(lost.event_id)]
    assert services.sweep() == 0
    poison.refresh_from_db()
    assert poison.status == "failed" and "without an outcome" in poison.last_error


def test_a_death_behind_an_open_circuit_is_counted_and_a_poison_one_still_fails(
    resource, receiver, settings
):
    """A drain died holding deliveries; the next drain finds the endpoint's circuit open and
    postpones what is due. Postponing must not erase the death (the only sign of it is the
    hold), and must not revive a delivery that reached WEBHOOK_MAX_DISPATCHES."""
    endpoint, lost, poison = held_by_a_dead_drain(resource, receiver, settings)
    Endpoint.objects.filter(pk=endpoint.pk).update(
        circuit_open_until=timezone.now() + timedelta(seconds=30)
    )
    services.drain(endpoint.pk)
    lost.refresh_from_db()
    assert (lost.status, lost.attempts, lost.redispatches) == ("pending", 0, 1)
    assert "no outcome" in lost.last_error and lost.next_attempt_at > timezone.now()
    assert services.sweep() == 0  # the lost one is postponed, not due; the poison one fails
    poison.refresh_from_db()
    assert poison.status == "failed" and "without an outcome" in poison.last_error
    assert receiver.received == []


def test_the_death_that_reaches_the_limit_fails_the_delivery_and_it_is_not_sent_again(
    resource, receiver, settings
):
    """A delivery whose drains died WEBHOOK_MAX_DISPATCHES times, this death included, is not
    sent again by the endpoint's next drain; the sweeper that counts that death fails it, rather
    than wake drains for it forever."""
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    book(resource, owner=owner)
    delivery = Delivery.objects.get()
    long_ago = timezone.now() - timedelta(minutes=5)
    Delivery.objects.filter(pk=delivery.pk).update(
        dispatched_at=long_ago,
        next_attempt_at=long_ago + timedelta(seconds=90),
        redispatches=settings.WEBHOOK_MAX_DISPATCHES - 1,
    )
    assert services.drain(endpoint.pk) == {}  # new traffic woke a drain before the sweeper
    assert services.sweep() == 0
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "without an outcome" in delivery.last_error
    assert delivery.redispatches == settings.WEBHOOK_MAX_DISPATCHES - 1
    assert services.drain(endpoint.pk) == {} and receiver.received == []


def test_a_drain_past_its_lease_postponing_what_it_holds_counts_no_death(
    resource, settings, monkeypatch
):
    """The circuit opens in the middle of a batch: the drain gives the rest back for later. If
    it has outlived its lease meanwhile, what it holds is still not a dead drain's."""
    settings.WEBHOOK_CIRCUIT = {"failure_threshold": 2, "cool_down": 30}
    monkeypatch.setattr(services, "drain_lease", lambda: 0.000001)  # out by the time it records
    owner = UserFactory()
    endpoint = endpoint_for(owner, "http://127.0.0.1:9/hook")
    for i in range(3):
        book(resource, owner=owner, email=f"g{i}@example.com")
    *_, third = Delivery.objects.order_by("id")
    assert services.drain(endpoint.pk)[third.pk] == "deferred"
    third.refresh_from_db()
    assert (third.status, third.attempts, third.redispatches, third.last_error) == (
        "pending",
        0,
        0,
        "",
    )


def test_what_a_drain_gives_back_unsent_is_not_taken_for_a_death(
    resource, receiver, settings, django_capture_on_commit_callbacks
):
    """A drain out of budget gives back what it claimed and did not send; if the wake it asks
    for is lost, the sweeper sends them again without counting a death against them."""
    settings.WEBHOOK_DRAIN_BUDGET = 0  # one request, then the budget is spent
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    for email in ("first@example.com", "second@example.com", "third@example.com"):
        book(resource, owner=owner, email=email)
    with django_capture_on_commit_callbacks() as wake:  # the wake is lost: not run
        outcomes = services.drain(endpoint.pk)
    assert list(outcomes.values()) == ["delivered"] and len(wake) == 1
    given_back = Delivery.objects.filter(status="pending")
    assert given_back.count() == 2
    # Minutes pass without the wake.
    for delivery in given_back:
        Delivery.objects.filter(pk=delivery.pk).update(
            dispatched_at=delivery.dispatched_at - timedelta(minutes=5),
            next_attempt_at=delivery.next_attempt_at - timedelta(minutes=5),
        )
    assert services.sweep() == 2
    assert list(given_back.values_list("redispatches", "last_error")) == [(0, "")] * 2


def test_redeliver_sends_again_with_a_fresh_budget_and_records_who_and_why(resource, receiver):
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    book(resource, owner=owner)
    delivery = Delivery.objects.get()
    services.drain(endpoint.pk)
    with pytest.raises(services.WebhookError):
        services.redeliver(deliveries=[delivery], actor="op", reason=" ")
    assert services.redeliver(deliveries=[delivery], actor="op", reason="client lost it") == 1
    assert services.drain(endpoint.pk) == {delivery.pk: "delivered"}
    assert [r.headers["webhook-id"] for r in receiver.received] == [str(delivery.event_id)] * 2
    notice = Notice.objects.get(kind="redelivered")
    assert notice.actor == "op" and "client lost it" in notice.message


def test_a_later_event_of_a_booking_waits_for_the_earlier_ones_first_attempt(
    resource, receiver, django_capture_on_commit_callbacks
):
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    booking = book(resource, owner=owner)
    drive(booking.saga_id)
    created, completed = Delivery.objects.order_by("event__sequence")
    assert completed.event.type == "booking.completed"
    # The earlier event is held by another drain (or deferred): the later one waits for it.
    Delivery.objects.filter(pk=created.pk).update(
        next_attempt_at=timezone.now() + timedelta(seconds=30)
    )
    with django_capture_on_commit_callbacks() as woken:
        assert services.drain(endpoint.pk) == {}
    assert receiver.received == []
    assert len(woken) == 1  # another look, WEBHOOK_DEFER seconds later
    due_now(created)
    assert services.drain(endpoint.pk) == {created.pk: "delivered", completed.pk: "delivered"}
    assert [r.json["sequence"] for r in receiver.received] == [1, 2]


def test_only_an_earlier_first_attempt_to_the_same_endpoint_holds_a_later_event_back(
    resource, receiver
):
    owner = UserFactory()
    first, second = endpoint_for(owner, receiver.url), endpoint_for(owner, receiver.url)
    held_back, retried = book(resource, owner=owner), book(resource, owner=owner)
    for booking in (held_back, retried):
        drive(booking.saga_id)

    def delivery(booking: Booking, endpoint: Endpoint, sequence: int) -> Delivery:
        return Delivery.objects.get(
            endpoint=endpoint, event__subject_id=str(booking.pk), event__sequence=sequence
        )

    later = timezone.now() + timedelta(seconds=30)
    # To the first endpoint: one booking's first event is held by another drain (no attempt
    # yet), the other's waits for its retry (one attempt made).
    Delivery.objects.filter(pk=delivery(held_back, first, 1).pk).update(next_attempt_at=later)
    Delivery.objects.filter(pk=delivery(retried, first, 1).pk).update(
        next_attempt_at=later, attempts=1
    )
    assert services.drain(first.pk) == {delivery(retried, first, 2).pk: "delivered"}
    # The other endpoint's deliveries wait for nothing of the first's.
    assert set(services.drain(second.pk).values()) == {"delivered"}
    assert Delivery.objects.filter(endpoint=second, status=Delivery.Status.SUCCEEDED).count() == 4


@pytest.mark.django_db(transaction=True)
def test_drains_of_one_endpoint_running_at_once_send_each_delivery_once(settings):
    """Each drain claims what it sends: two drains at the same moment (two workers) share the
    deliveries between them, and no delivery goes out twice."""
    settings.WEBHOOK_ENDPOINT_CONCURRENCY = 2
    settings.WEBHOOK_BATCH = 5
    receiver = Receiver(keep_alive=True)
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    for number in range(30):
        rows = services.outbox(
            owner_id=owner.pk,
            type="booking.created",
            subject_id=f"BK-{number}",
            sequence=1,
            data={"number": number},
        )
        with transaction.atomic():
            for row in rows:
                row.save()
    start = threading.Barrier(2)
    outcomes: list[dict[int, str]] = []

    def drain() -> None:
        start.wait()
        try:
            outcomes.append(services.drain(endpoint.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        receiver.stop()
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids)) == 30  # each event sent, once
    first, second = outcomes
    assert not set(first) & set(second) and len(first) + len(second) == 30
    assert Attempt.objects.count() == 30
    assert Delivery.objects.filter(status="succeeded", attempts=1).count() == 30


def test_a_delivery_whose_drain_died_is_sent_alone(resource, receiver):
    """It may be what kills the worker: the deliveries of its endpoint are not sent in its batch,
    so that they are not counted with it if it kills this drain too."""
    owner = UserFactory()
    endpoint = endpoint_for(owner, receiver.url)
    for i in range(4):
        book(resource, owner=owner, email=f"g{i}@example.com")
    first, suspect, *rest = Delivery.objects.order_by("id")
    Delivery.objects.filter(pk=suspect.pk).update(redispatches=1)
    outcomes = services.drain(endpoint.pk)
    assert outcomes == dict.fromkeys([first.pk, suspect.pk, *(d.pk for d in rest)], "delivered")
    # Each batch's deliveries keep the moment of the claim that took them.
    batches: dict[object, list[int]] = {}
    for pk, claimed_at in Delivery.objects.order_by("id").values_list("id", "dispatched_at"):
        batches.setdefault(claimed_at, []).append(pk)
    assert sorted(batches.values()) == [[first.pk], [suspect.pk], [d.pk for d in rest]]
