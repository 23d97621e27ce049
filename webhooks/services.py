"""Webhooks' operations: publish an event (the transactional outbox), manage a client's
endpoints, run one delivery attempt, sweep, redeliver. The API, the admin and the tasks call
these. This app knows nothing of bookings: a caller gives the event's owner, type, subject and
data."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import BaseCache
from django.core.mail import mail_admins, send_mail
from django.db import transaction
from django.db.models import Exists, F, Model, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string

from . import addresses, signing, transport
from .models import Attempt, Delivery, Endpoint, Event, Notice

log = logging.getLogger(__name__)


class WebhookError(Exception):
    """Bad input to a webhooks service; `fields` says which, for a 400."""

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


# --- the outbox (rows written with the change they report) ------------------------------


def outbox(
    *, owner_id: Any, type: str, subject_id: str, sequence: int, data: dict[str, Any]
) -> list[Model]:
    """An event and one pending delivery per enabled endpoint of the owner (`owner_id`) that
    wants its type, not written yet: the caller writes them with the change they report (all or
    nothing), then calls send() once they are committed (a delivery whose message is lost is
    sent again by the sweeper). `sequence`: the event's number for its subject, 1, 2, 3...,
    which the caller keeps with the subject (a second event with the same number is refused
    by the database)."""
    now = timezone.now()
    event = Event(
        type=type,
        owner_id=owner_id,
        subject_id=str(subject_id),
        sequence=sequence,
        data=data,
        created_at=now,
    )
    if owner_id is None:
        return [event]
    endpoints = Endpoint.objects.filter(owner_id=owner_id, enabled=True).only("id", "event_types")
    deliveries = [
        Delivery(event=event, endpoint=e, next_attempt_at=now, dispatched_at=now)
        for e in endpoints
        if e.wants(type)
    ]
    return [event, *deliveries]


def send(rows: list[Any]) -> None:
    """Send the messages of the deliveries among `rows`, which are committed."""
    for row in rows:
        if isinstance(row, Delivery):
            _send(row.pk)


def _send(delivery_id: int, delay: float = 0.0) -> None:
    from .tasks import deliver

    try:
        deliver.apply_async((delivery_id,), queue=settings.WEBHOOK_QUEUE, countdown=delay)
    except Exception:  # the broker is down: the row is written, the sweeper sends it later
        log.warning("delivery %s: message not sent; the sweeper will", delivery_id)


def _send_on_commit(delivery_id: int, delay: float = 0.0) -> None:
    transaction.on_commit(lambda: _send(delivery_id, delay))


def body_of(event: Event) -> bytes:
    """The bytes signed and sent: the same for every attempt of every delivery of the event."""
    return json.dumps(represent(event), separators=(",", ":"), sort_keys=True).encode()


def represent(event: Event) -> dict[str, Any]:
    """An event as the webhook body and the events feed show it."""
    return {
        "id": str(event.id),
        "type": event.type,
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "subject": event.subject_id,
        "sequence": event.sequence,
        "data": event.data,
    }


# --- endpoints -----------------------------------------------------------------------------


def _clean(url: str | None, event_types: list[str] | None) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if url is not None:
        try:
            addresses.check_url(url)
        except addresses.ForbiddenAddress as exc:
            errors["url"] = [str(exc)]
    if event_types is not None:
        unknown = sorted(set(event_types) - set(settings.WEBHOOK_EVENT_TYPES))
        if unknown:
            errors["event_types"] = [
                f"Unknown event type(s): {', '.join(unknown)}. "
                f"Known: {', '.join(settings.WEBHOOK_EVENT_TYPES)}."
            ]
    return errors


def endpoint_create(
    *, owner: Any, url: str, event_types: list[str], description: str = ""
) -> Endpoint:
    """A new endpoint with a new secret (the caller shows it once)."""
    errors = _clean(url, event_types)
    if errors:
        raise WebhookError("Invalid endpoint.", errors)
    return Endpoint.objects.create(
        owner=owner,
        url=url,
        event_types=sorted(set(event_types)),
        description=description,
        secret=signing.new_secret(),
    )


def endpoint_update(*, endpoint: Endpoint, **changes: Any) -> Endpoint:
    """Change url, event_types, description or enabled. Enabling again clears the endpoint's
    failure record and circuit; its pending deliveries resume."""
    errors = _clean(changes.get("url"), changes.get("event_types"))
    if errors:
        raise WebhookError("Invalid endpoint.", errors)
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        for name in ("url", "description"):
            if name in changes:
                setattr(endpoint, name, changes[name])
        if "event_types" in changes:
            endpoint.event_types = sorted(set(changes["event_types"]))
        if "enabled" in changes and changes["enabled"] != endpoint.enabled:
            endpoint.enabled = changes["enabled"]
            if endpoint.enabled:
                endpoint.disabled_reason, endpoint.disabled_at = "", None
                endpoint.failing_since, endpoint.consecutive_failures = None, 0
                endpoint.circuit_open_until = None
            else:
                endpoint.disabled_reason, endpoint.disabled_at = "disabled by its owner", now()
        endpoint.save()
    return endpoint


def endpoint_delete(*, endpoint: Endpoint) -> None:
    """Delete an endpoint and its deliveries; its events stay (the events feed shows them)."""
    endpoint.delete()


def endpoint_rotate_secret(*, endpoint: Endpoint, overlap_seconds: int) -> Endpoint:
    """A new secret; the current one keeps signing too for `overlap_seconds` (both signatures
    are sent), so receivers can switch without losing a message."""
    if not 0 <= overlap_seconds <= 7 * 24 * 3600:
        raise WebhookError(
            "Invalid overlap.", {"overlap_seconds": ["Give 0 to 604800 seconds (7 days)."]}
        )
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.previous_secret = endpoint.secret if overlap_seconds else ""
        endpoint.previous_secret_expires_at = (
            now() + timedelta(seconds=overlap_seconds) if overlap_seconds else None
        )
        endpoint.secret = signing.new_secret()
        endpoint.save()
    return endpoint


def signing_secrets(endpoint: Endpoint, at: datetime) -> list[str]:
    """The secrets that sign a message sent at `at`: the current one, and the previous one while
    its overlap lasts."""
    keys = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and at < expires:
        keys.append(endpoint.previous_secret)
    return keys


def now() -> datetime:
    return timezone.now()


# --- delivery ------------------------------------------------------------------------------
#
# The common case costs one read and one short transaction: read the delivery with its event and
# endpoint, POST, then record the attempt and the delivery's new state together, only if nobody
# recorded this attempt meanwhile. No lock is held across the request and nothing is written
# before it: a copy of the message running at the same time may send the event twice (the same
# webhook-id: receivers deduplicate), and a worker that dies mid-attempt leaves the delivery due,
# for the sweeper. The per-endpoint limit of attempts in flight is a counter in the coordination
# cache, shared by every worker like the providers' circuits.


@cache
def coordination_cache() -> BaseCache:
    """The cache every process of the deployment shares (settings.COORDINATION_CACHE)."""
    conf = dict(settings.COORDINATION_CACHE)
    backend = import_string(conf.pop("BACKEND"))
    return backend(conf.pop("LOCATION", ""), conf)


@contextmanager
def endpoint_slot(endpoint: Endpoint, limit: int) -> Iterator[bool]:
    """One of the endpoint's `limit` slots for an attempt in flight, or False if all are taken.
    A slot held by a worker that died is freed when the counter expires (the attempt's lease)."""
    key = f"webhooks:in-flight:{endpoint.pk}"
    lease = (
        settings.WEBHOOK_CONNECT_TIMEOUT + settings.WEBHOOK_TIMEOUT + settings.WEBHOOK_LEASE_MARGIN
    )
    store = coordination_cache()
    store.add(key, 0, timeout=lease)
    try:
        taken = store.incr(key)
    except ValueError:  # expired between add and incr
        store.add(key, 1, timeout=lease)
        taken = 1
    try:
        yield taken <= limit
    finally:
        with suppress(ValueError):  # expired meanwhile: nothing to give back
            store.decr(key)


def deliver(delivery_id: int) -> str:
    """Run the attempt of a delivery that is due: within its endpoint's circuit and concurrency
    limit, POST it, then record the attempt and schedule the next one. A message that comes
    early, twice, or for a finished delivery changes nothing. Returns what happened."""
    delivery = (
        Delivery.objects.select_related("event", "endpoint")
        .annotate(earlier_waiting=Exists(_earlier_waiting()))
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.status != Delivery.Status.PENDING:
        return "done"
    moment = now()
    if delivery.next_attempt_at > moment + timedelta(seconds=1):
        return "early"  # a copy of an earlier message; the due one comes at its time
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING).update(
            status=Delivery.Status.FAILED, last_error="the endpoint is disabled", updated_at=moment
        )
        return "endpoint disabled"
    half_open = endpoint.consecutive_failures >= settings.WEBHOOK_CIRCUIT["failure_threshold"]
    limit = 1 if half_open else settings.WEBHOOK_ENDPOINT_CONCURRENCY
    # An earlier event of the same subject to the same endpoint makes its first attempt first
    # (events then arrive in order while the receiver answers; after a failure a later event
    # may overtake a retried one: receivers order by `sequence`).
    wait = _circuit_wait(endpoint, moment) or (
        settings.WEBHOOK_DEFER if delivery.earlier_waiting else 0.0
    )
    if wait:
        return _postpone(delivery, moment, wait)
    with endpoint_slot(endpoint, limit) as free:
        if not free:
            return _postpone(delivery, moment, settings.WEBHOOK_DEFER)
        at = int(moment.timestamp())
        body = body_of(delivery.event)
        msg_id = str(delivery.event_id)
        answer = transport.post(
            endpoint.url,
            signing.headers(signing_secrets(endpoint, moment), msg_id, at, body),
            body,
            connect_timeout=settings.WEBHOOK_CONNECT_TIMEOUT,
            timeout=settings.WEBHOOK_TIMEOUT,
        )
    return _record(delivery, answer)


def _circuit_wait(endpoint: Endpoint, moment: datetime) -> float:
    """Seconds until the endpoint's circuit lets attempts through again (0: it does)."""
    if endpoint.circuit_open_until is not None and endpoint.circuit_open_until > moment:
        return (endpoint.circuit_open_until - moment).total_seconds()
    return 0.0


def _earlier_waiting() -> QuerySet[Delivery]:
    """The deliveries, to the outer delivery's endpoint, of earlier events of its subject that
    have not made their first attempt yet (read with the delivery, as one EXISTS)."""
    return Delivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"),
        status=Delivery.Status.PENDING,
        attempts=0,
        event__subject_id=OuterRef("event__subject_id"),
        event__sequence__lt=OuterRef("event__sequence"),
    )


def _postpone(delivery: Delivery, moment: datetime, wait: float) -> str:
    """Move the attempt `wait` seconds on without spending it."""
    due = moment + timedelta(seconds=wait)
    countdown = wait <= settings.WEBHOOK_COUNTDOWN_MAX
    moved = Delivery.objects.filter(
        pk=delivery.pk, status=Delivery.Status.PENDING, attempts=delivery.attempts
    ).update(next_attempt_at=due, dispatched_at=due if countdown else None, updated_at=moment)
    if moved and countdown:
        _send_on_commit(delivery.pk, wait)
    return "deferred"


def _record(delivery: Delivery, answer: transport.Answer) -> str:
    """Write the attempt and the delivery's next state in one transaction, if this attempt is
    still the one to record (else a copy of it got there first: "duplicate")."""
    moment = now()
    number = delivery.attempts + 1
    fields: dict[str, Any] = {
        "attempts": number,
        "last_response_status": answer.status,
        "updated_at": moment,
    }
    endpoint = delivery.endpoint
    with transaction.atomic():
        if answer.ok:
            fields.update(status=Delivery.Status.SUCCEEDED, delivered_at=moment, last_error="")
            outcome = "delivered"
        else:
            endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
            fields["last_error"] = (answer.error or f"answered {answer.status}")[:500]
            outcome = _failed(fields, number, endpoint, moment)
        recorded = Delivery.objects.filter(
            pk=delivery.pk, status=Delivery.Status.PENDING, attempts=number - 1
        ).update(**fields)
        if not recorded:
            transaction.set_rollback(True)
            return "duplicate"
        Attempt.objects.create(
            delivery_id=delivery.pk,
            number=number,
            status=Attempt.Status.SUCCEEDED if answer.ok else Attempt.Status.FAILED,
            started_at=moment - timedelta(milliseconds=answer.duration_ms),
            duration_ms=answer.duration_ms,
            response_status=answer.status,
            response_body=answer.body,
            error=answer.error,
        )
        if fields.get("dispatched_at") is not None:
            _send_on_commit(delivery.pk, (fields["next_attempt_at"] - moment).total_seconds())
        if answer.ok and (endpoint.consecutive_failures or endpoint.failing_since):
            Endpoint.objects.filter(pk=endpoint.pk).update(
                failing_since=None, consecutive_failures=0, circuit_open_until=None
            )
        elif not answer.ok:
            endpoint.save(update_fields=HEALTH_FIELDS)
    return outcome


HEALTH_FIELDS = [
    "failing_since",
    "consecutive_failures",
    "circuit_open_until",
    "enabled",
    "disabled_reason",
    "disabled_at",
]


def _failed(fields: dict[str, Any], number: int, endpoint: Endpoint, moment: datetime) -> str:
    """A failed attempt (`endpoint` locked): the delivery's next attempt or its end, in
    `fields`; the endpoint's circuit opened after too many failures in a row, and the endpoint
    disabled when it has failed for too long."""
    endpoint.failing_since = endpoint.failing_since or moment
    endpoint.consecutive_failures += 1
    circuit = settings.WEBHOOK_CIRCUIT
    if endpoint.consecutive_failures >= circuit["failure_threshold"]:
        endpoint.circuit_open_until = moment + timedelta(seconds=circuit["cool_down"])
    failing_for = (moment - endpoint.failing_since).total_seconds()
    if endpoint.enabled and failing_for >= settings.WEBHOOK_DISABLE_AFTER:
        _disable(endpoint, moment, failing_for)
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if number > len(schedule) or not endpoint.enabled:
        fields["status"] = Delivery.Status.FAILED
        return "failed"
    delay = float(schedule[number - 1])
    fields["next_attempt_at"] = moment + timedelta(seconds=delay)
    # A retry due soon leaves now with a countdown; a later one is left to the sweeper.
    soon = delay <= settings.WEBHOOK_COUNTDOWN_MAX
    fields["dispatched_at"] = fields["next_attempt_at"] if soon else None
    return f"retry in {delay:g} s"


def _disable(endpoint: Endpoint, moment: datetime, failing_for: float) -> None:
    endpoint.enabled = False
    endpoint.disabled_at = moment
    days = failing_for / 86400
    endpoint.disabled_reason = f"every attempt failed for {days:.1f} days"
    message = (
        f"The webhook endpoint {endpoint.url} ({endpoint.pk}) was disabled: every delivery "
        f"attempt has failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC. Fix the "
        "receiver, then enable the endpoint again (PATCH enabled=true); its undelivered events "
        "are in the events feed (GET /api/v1/events/)."
    )
    Notice.objects.create(kind=Notice.Kind.ENDPOINT_DISABLED, endpoint=endpoint, message=message)
    owner_email = getattr(endpoint.owner, "email", "")

    def tell() -> None:
        subject = "Webhook endpoint disabled"
        if owner_email:
            send_mail(subject, message, None, [owner_email], fail_silently=True)
        mail_admins(subject, message, fail_silently=True)

    transaction.on_commit(tell)


# --- recovery and operators ----------------------------------------------------------------


def sweep(*, limit: int | None = None) -> int:
    """Send again the message of every due delivery nobody took: lost between commit and broker,
    not sent yet (a retry too far ahead for a countdown), or whose worker died mid-attempt.
    A delivery sent this way WEBHOOK_MAX_DISPATCHES times without any outcome has failed (a
    message that kills its worker must not be retried forever). Returns how many were sent."""
    moment = now()
    stale = moment - timedelta(seconds=settings.WEBHOOK_REDISPATCH_AFTER)
    due = list(
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=moment)
        .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale))
        .order_by("next_attempt_at")
        .values_list("pk", "dispatched_at", "redispatches")[: limit or settings.WEBHOOK_SWEEP_BATCH]
    )
    if not due:
        return 0
    poison = [pk for pk, sent, count in due if sent and count >= settings.WEBHOOK_MAX_DISPATCHES]
    again = [pk for pk, sent, _count in due if pk not in poison]
    resent = [pk for pk, sent, _count in due if sent and pk in again]
    with transaction.atomic():
        Delivery.objects.filter(pk__in=poison, status=Delivery.Status.PENDING).update(
            status=Delivery.Status.FAILED,
            last_error="sent again and again without an outcome (its worker dies?)",
            updated_at=moment,
        )
        Delivery.objects.filter(pk__in=again).update(dispatched_at=moment, updated_at=moment)
        Delivery.objects.filter(pk__in=resent).update(
            redispatches=F("redispatches") + 1,
            last_error="sent again: no outcome recorded after it was sent",
        )
        for pk in again:
            _send_on_commit(pk)
    return len(again)


def redeliver(*, deliveries: list[Delivery], actor: str, reason: str) -> int:
    """An operator sends deliveries again now, whatever their status, with a fresh retry budget
    (the same webhook-id). Recorded with who and why. Returns how many."""
    if not reason.strip():
        raise WebhookError("A reason is required.", {"reason": ["Give a reason."]})
    ids = [d.pk for d in deliveries]
    with transaction.atomic():
        moment = now()
        count = Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.Status.PENDING,
            attempts=0,
            next_attempt_at=moment,
            dispatched_at=moment,
            redispatches=0,
            updated_at=moment,
        )
        for pk in ids:
            _send_on_commit(pk)
        Notice.objects.create(
            kind=Notice.Kind.REDELIVERED,
            actor=actor,
            message=f"{count} deliveries sent again ({', '.join(map(str, ids[:50]))}). "
            f"Reason: {reason.strip()}",
        )
    return count
