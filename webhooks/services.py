"""Webhooks' operations: publish an event (the transactional outbox), manage a client's
endpoints, run one delivery attempt, sweep, redeliver. The API, the admin and the tasks call
these. This app knows nothing of bookings: a caller gives the event's owner, type, subject and
data."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.mail import mail_admins, send_mail
from django.db import connection, transaction
from django.db.models import Case, F, Model, Q, QuerySet, Value, When
from django.db.models.query import RawQuerySet
from django.utils import timezone

from config import queries
from config.cache import UNREACHABLE

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
    nothing), then calls send() once they are committed (a delivery whose drain never comes is
    sent by the sweeper). `sequence`: the event's number for its subject, 1, 2, 3...,
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
    deliveries = [
        Delivery(event=event, endpoint=e, next_attempt_at=now, dispatched_at=now)
        for e in _enabled_endpoints(owner_id)
        if e.wants(type)
    ]
    return [event, *deliveries]


def _enabled_endpoints(owner_id: Any) -> RawQuerySet[Endpoint]:
    """The owner's enabled endpoints (their id and event types); asked with every event."""
    owner = Endpoint._meta.get_field("owner").get_db_prep_value(owner_id, connection)
    return queries.select(Endpoint, "{owner} = %s AND {enabled}", [owner], fields=["event_types"])


def send(rows: list[Any]) -> None:
    """Wake the endpoints of the deliveries among `rows`, which are committed."""
    wake(row.endpoint_id for row in rows if isinstance(row, Delivery))


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
# A drain sends an endpoint's due deliveries, in order, one request at a time over one
# kept-alive connection:
# - it claims a batch of them in one short transaction, pushing each one's next attempt past
#   the drain's lease, so that no other drain takes them meanwhile;
# - it POSTs them, writing nothing in between;
# - it records every attempt and each delivery's next step in one transaction, only for the
#   deliveries it still holds.
# A drain whose worker dies records nothing: its deliveries fall due again when the lease runs
# out, and the sweeper wakes the endpoint; the same webhook-ids go out again and receivers
# deduplicate. A drain runs for about WEBHOOK_DRAIN_BUDGET seconds at most, then leaves the rest
# to the next one, so a busy endpoint shares the workers with the sagas and the other endpoints.
# At most WEBHOOK_ENDPOINT_CONCURRENCY drains of one endpoint run at once: a counter in the
# coordination cache, shared by every worker like the providers' circuits.
#
# A drain is woken by a message that carries only the endpoint's id. Wakes are coalesced: a flag
# in the coordination cache says that a drain of the endpoint is on its way, and the drain clears
# it before it claims anything, so an event committed while it runs wakes another.


NO_OUTCOME = "sent again: no outcome recorded after it was sent"  # a drain died holding it


def drain_lease() -> float:
    """Seconds a drain holds what it claimed: its budget, then one whole attempt, then a margin."""
    return (
        settings.WEBHOOK_DRAIN_BUDGET
        + settings.WEBHOOK_CONNECT_TIMEOUT
        + settings.WEBHOOK_TIMEOUT
        + settings.WEBHOOK_LEASE_MARGIN
    )


def wake(endpoint_ids: Iterable[Any]) -> None:
    """Have each endpoint's due deliveries sent (their rows are committed). An endpoint's first
    event in a second wakes a drain at once. An event that follows it within the second wakes a
    drain WEBHOOK_BATCH_WINDOW seconds later, which takes every event that came meanwhile; the
    events before that drain starts wake nothing more. So a quiet endpoint gets each event at
    once, and a busy one gets them in batches (one round trip to the coordination cache per
    event)."""
    store = caches["coordination"]
    window = settings.WEBHOOK_BATCH_WINDOW
    for endpoint_id in sorted(set(endpoint_ids)):
        try:
            if window and store.add(_trailing_key(endpoint_id), 1, timeout=drain_lease()):
                if not store.add(_window_key(endpoint_id), 1, timeout=math.ceil(window)):
                    # A drain came in this window: this one runs at its end.
                    _publish(endpoint_id, window, trailing=True)
                    continue
                store.delete(_trailing_key(endpoint_id))  # the first of its window
            elif window:
                continue  # a drain at the window's end is on its way
        except Exception:  # the coordination cache is down: wake at once
            log.warning("endpoint %s: no window (coordination cache)", endpoint_id, exc_info=True)
            with suppress(Exception):  # a trailing key left here would hold back the next wakes
                store.delete(_trailing_key(endpoint_id))
        _publish(endpoint_id)


def _window_key(endpoint_id: Any) -> str:
    return f"webhooks:window:{endpoint_id}"


def _trailing_key(endpoint_id: Any) -> str:
    return f"webhooks:trailing:{endpoint_id}"


def _publish(endpoint_id: Any, delay: float = 0.0, *, trailing: bool = False) -> None:
    from .tasks import drain

    try:
        drain.apply_async(
            (endpoint_id,),
            {"trailing": True} if trailing else {},
            queue=settings.WEBHOOK_QUEUE,
            countdown=delay or None,
        )
    except Exception:  # the broker is down: the rows are written, the sweeper wakes it later
        log.warning("endpoint %s: drain not sent; the sweeper will", endpoint_id)
        if trailing:
            with suppress(Exception):
                caches["coordination"].delete(_trailing_key(endpoint_id))


def _publish_on_commit(endpoint_id: Any, delay: float = 0.0) -> None:
    transaction.on_commit(lambda: _publish(endpoint_id, delay))


@contextmanager
def endpoint_slot(endpoint: Endpoint, limit: int) -> Iterator[bool]:
    """One of the endpoint's `limit` slots for a drain, or False if all are taken, or if the
    coordination cache cannot say (the drain then waits, like a provider call: the limit holds).
    A slot held by a worker that died is freed when it expires (the drain's lease)."""
    store = caches["coordination"]
    key = None
    try:
        for number in range(limit):
            slot = f"webhooks:slot:{endpoint.pk}:{number}"
            if store.add(slot, 1, timeout=drain_lease()):
                key = slot
                break
    except UNREACHABLE:
        log.warning("endpoint %s: no drain slot (coordination cache)", endpoint.pk, exc_info=True)
    if key is None:
        yield False
        return
    try:
        yield True
    finally:
        with suppress(*UNREACHABLE):  # the slot expires with the lease
            store.delete(key)


def drain(endpoint_id: Any, *, trailing: bool = False) -> dict[int, str]:
    """Send the endpoint's due deliveries, within its circuit and concurrency limit, and record
    each attempt. Returns what happened to each delivery it took, by id: "delivered",
    "retry in N s", "failed" or "deferred" (its attempt moved on without being spent).
    `trailing`: the drain at the end of a window (see wake())."""
    if trailing:  # before the claim: an event committed from now on wakes another drain
        with suppress(Exception):  # a key left by a dead cache expires with the lease
            caches["coordination"].delete(_trailing_key(endpoint_id))
    endpoint = Endpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is None:
        return {}
    moment = now()
    due = Delivery.objects.filter(
        endpoint_id=endpoint.pk, status=Delivery.Status.PENDING, next_attempt_at__lte=moment
    )
    if not endpoint.enabled:
        due.update(
            status=Delivery.Status.FAILED, last_error="the endpoint is disabled", updated_at=moment
        )
        return {}
    wait = _circuit_wait(endpoint, moment)
    if wait:  # the due deliveries wait for the circuit, without spending attempts
        ids = list(due.values_list("pk", flat=True))
        _postpone(
            endpoint,
            due.filter(pk__in=ids),
            moment + timedelta(seconds=wait),
            moment,
            dead_holds=True,
        )
        return dict.fromkeys(ids, "deferred")
    outcomes: dict[int, str] = {}
    threshold = settings.WEBHOOK_CIRCUIT["failure_threshold"]
    half_open = endpoint.consecutive_failures >= threshold
    with endpoint_slot(endpoint, 1 if half_open else settings.WEBHOOK_ENDPOINT_CONCURRENCY) as free:
        if not free:
            _publish_on_commit(endpoint.pk, settings.WEBHOOK_DEFER)
            return {}
        sender = transport.Sender(
            endpoint.url,
            connect_timeout=settings.WEBHOOK_CONNECT_TIMEOUT,
            timeout=settings.WEBHOOK_TIMEOUT,
        )
        started = time.monotonic()
        try:
            while True:
                half_open = endpoint.consecutive_failures >= threshold
                size = 1 if half_open else settings.WEBHOOK_BATCH
                batch, claimed_at, gave_back = _claim(endpoint, size)
                if not batch:
                    if due.exclude(_spent(moment)).exists():
                        # Due, but behind an earlier event of their booking that another drain
                        # holds: once that one's attempt is made, they may go.
                        _publish_on_commit(endpoint.pk, settings.WEBHOOK_DEFER)
                    return outcomes
                sent = _send(sender, endpoint, batch, started)
                outcomes |= _record(endpoint, sent, batch[len(sent) :], claimed_at)
                if not endpoint.enabled or _circuit_wait(endpoint, now()):
                    return outcomes
                if len(sent) == len(batch) < size and not gave_back:
                    return outcomes  # all that was due; a later one wakes another drain
                if time.monotonic() - started >= settings.WEBHOOK_DRAIN_BUDGET:
                    break
        finally:
            sender.close()
    _publish_on_commit(endpoint.pk)  # out of budget: the next drain goes on from here
    return outcomes


def _claim(endpoint: Endpoint, size: int) -> tuple[list[Delivery], datetime, bool]:
    """Up to `size` of the endpoint's due deliveries, oldest first, with their events, held
    for this drain until its lease runs out. A delivery waits while an earlier event of its
    subject to this endpoint has not made its first attempt (events arrive in order while the
    receiver answers; after a failure a later event may overtake a retried one: receivers
    order by `sequence`). Also returns whether it gave some back (see below)."""
    moment = now()
    lease_end = moment + timedelta(seconds=drain_lease())
    if not _hold(endpoint.pk, size, moment, lease_end):
        return [], moment, False
    held = Delivery.objects.filter(
        endpoint_id=endpoint.pk,
        status=Delivery.Status.PENDING,
        next_attempt_at=lease_end,
        dispatched_at=moment,
    )
    batch = list(held.select_related("event").order_by("pk"))
    # A delivery whose drain died (it may be what kills its worker) goes alone: the others of
    # its batch are not counted with it if it kills this drain too.
    suspect = next((i for i, d in enumerate(batch) if d.redispatches), None)
    if suspect is not None and len(batch) > 1:
        keep = batch[: suspect or 1]
        held.exclude(pk__in=[d.pk for d in keep]).update(next_attempt_at=moment)
        return keep, moment, True
    return batch, moment, False


def _hold(endpoint_id: Any, size: int, moment: datetime, lease_end: datetime) -> int:
    """Push the next attempt of up to `size` of the endpoint's due deliveries, oldest first, to
    `lease_end` and mark them dispatched at `moment`, skipping those behind an earlier event of
    their subject whose delivery to this endpoint has not made its first attempt and is not due
    (held by another drain, or deferred). Returns how many it holds.

    One statement: a row another drain took meanwhile no longer matches the outer conditions
    when this UPDATE reaches it, and is left to that drain. Plain SQL that PostgreSQL and SQLite
    both run: the ORM's form of it (an update of a sliced subquery with an Exists) cost more to
    compile than the rest of a drain's fixed work (docs/performance.md)."""
    ops = connection.ops
    deliveries = ops.quote_name(Delivery._meta.db_table)
    events = ops.quote_name(Event._meta.db_table)
    endpoint = Delivery._meta.get_field("endpoint").get_db_prep_value(endpoint_id, connection)
    pending = Delivery.Status.PENDING.value
    at, until = ops.adapt_datetimefield_value(moment), ops.adapt_datetimefield_value(lease_end)
    # Only table names and fixed SQL are formatted in; every value is a parameter.
    # A row still held by a drain whose lease ran out (its next attempt after its dispatch, see
    # the model) had a drain die on it: counted here as the sweeper counts it, so that a busy
    # endpoint's next drain cannot take it again and again uncounted. One whose deaths reach
    # WEBHOOK_MAX_DISPATCHES, this one included, is not taken: the sweeper marks it failed.
    died = "next_attempt_at > dispatched_at"
    sql = (
        f"UPDATE {deliveries} SET next_attempt_at = %s, dispatched_at = %s, updated_at = %s,"  # noqa: S608  # nosec B608
        f" redispatches = redispatches + CASE WHEN {died} THEN 1 ELSE 0 END,"
        f" last_error = CASE WHEN {died} THEN %s ELSE last_error END"
        " WHERE endpoint_id = %s AND status = %s AND next_attempt_at <= %s AND id IN ("
        f" SELECT d.id FROM {deliveries} d JOIN {events} e ON e.id = d.event_id"
        " WHERE d.endpoint_id = %s AND d.status = %s AND d.next_attempt_at <= %s"
        " AND d.redispatches"
        " + CASE WHEN d.next_attempt_at > d.dispatched_at THEN 1 ELSE 0 END < %s"
        " AND NOT EXISTS ("
        f"  SELECT 1 FROM {deliveries} w JOIN {events} we ON we.id = w.event_id"
        "   WHERE w.endpoint_id = d.endpoint_id AND w.status = %s AND w.attempts = 0"
        "   AND w.next_attempt_at > %s"
        "   AND we.subject_id = e.subject_id AND we.sequence < e.sequence)"
        " ORDER BY d.id LIMIT %s)"
    )
    most = settings.WEBHOOK_MAX_DISPATCHES
    params = [until, at, at, NO_OUTCOME, endpoint, pending, at, endpoint, pending, at, most,
              pending, at, size]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _send(
    sender: transport.Sender, endpoint: Endpoint, batch: list[Delivery], started: float
) -> list[tuple[Delivery, transport.Answer]]:
    """POST the batch in order; stop when the drain's budget is spent or when the failures in a
    row would open the circuit. Returns what was sent, with each answer."""
    sent: list[tuple[Delivery, transport.Answer]] = []
    in_a_row = endpoint.consecutive_failures
    for delivery in batch:
        if sent and time.monotonic() - started >= settings.WEBHOOK_DRAIN_BUDGET:
            break
        moment = now()
        body = body_of(delivery.event)
        headers = signing.headers(
            signing_secrets(endpoint, moment), str(delivery.event_id), int(moment.timestamp()), body
        )
        answer = sender.post(headers, body)
        sent.append((delivery, answer))
        in_a_row = 0 if answer.ok else in_a_row + 1
        if in_a_row >= settings.WEBHOOK_CIRCUIT["failure_threshold"]:
            break
    return sent


def _circuit_wait(endpoint: Endpoint, moment: datetime) -> float:
    """Seconds until the endpoint's circuit lets attempts through again (0: it does)."""
    if endpoint.circuit_open_until is not None and endpoint.circuit_open_until > moment:
        return (endpoint.circuit_open_until - moment).total_seconds()
    return 0.0


def _postpone(
    endpoint: Endpoint,
    deliveries: QuerySet[Delivery],
    due: datetime,
    moment: datetime,
    *,
    dead_holds: bool = False,
) -> None:
    """Move the next attempt of `deliveries` to `due` without spending it; a drain is woken
    then (or the sweeper sends them, if that is too far ahead for a countdown).

    `dead_holds`: the deliveries are due, not held by the caller, so one whose hold ran out
    had its drain die on it. Its death is counted as _hold and the sweeper count it (moving it
    would erase the only sign of it), and one whose death reaches WEBHOOK_MAX_DISPATCHES is left
    for the sweeper to fail. (A drain postponing what it holds itself counts no death.)"""
    wait = (due - moment).total_seconds()
    countdown = wait <= settings.WEBHOOK_COUNTDOWN_MAX
    pending = deliveries.filter(status=Delivery.Status.PENDING)
    moves: dict[str, Any] = {
        "next_attempt_at": due,
        "dispatched_at": due if countdown else None,
        "updated_at": moment,
    }
    if dead_holds:
        died = _died(moment)
        pending = pending.exclude(_spent(moment))
        moves["redispatches"] = F("redispatches") + Case(When(died, then=1), default=0)
        moves["last_error"] = Case(When(died, then=Value(NO_OUTCOME)), default=F("last_error"))
    moved = pending.update(**moves)
    if moved and countdown:
        _publish_on_commit(endpoint.pk, wait)


def _died(moment: datetime) -> Q:
    """Pending deliveries held by a drain whose hold ran out by `moment`: it died on them (only
    a drain's hold leaves the next attempt after the dispatch; see sweep())."""
    return Q(next_attempt_at__gt=F("dispatched_at"), next_attempt_at__lte=moment)


def _spent(moment: datetime) -> Q:
    """Deliveries whose drains died WEBHOOK_MAX_DISPATCHES times, counting a death not counted
    yet: no drain takes them any more, the sweeper fails them."""
    most = settings.WEBHOOK_MAX_DISPATCHES
    return Q(redispatches__gte=most) | (_died(moment) & Q(redispatches__gte=most - 1))


def _record(
    endpoint: Endpoint,
    sent: list[tuple[Delivery, transport.Answer]],
    unsent: list[Delivery],
    claimed_at: datetime,
) -> dict[int, str]:
    """Write the attempts of a batch, each delivery's next state and the endpoint's health in
    one transaction, for the deliveries this drain still holds (one taken meanwhile by another
    drain, the sweeper or an operator is left alone, and goes out again with its webhook-id).
    The deliveries claimed but not sent wait: until the circuit closes if it opened, else for
    the next drain. `endpoint` is updated with its health as written."""
    moment = now()
    outcomes: dict[int, str] = {}
    mine = Delivery.objects.filter(status=Delivery.Status.PENDING, dispatched_at=claimed_at)
    with transaction.atomic():
        # The rows still held by this drain, locked until the outcomes are written; one that an
        # operator or the sweeper moved meanwhile is left to whoever has it now (its attempt
        # goes unrecorded, and the event out again with the same webhook-id).
        still = set(
            mine.filter(pk__in=[d.pk for d, _ in sent])
            .select_for_update()
            .values_list("pk", flat=True)
        )
        sent = [(d, answer) for d, answer in sent if d.pk in still]
        failing = any(not answer.ok for _, answer in sent)
        health = endpoint
        if failing or endpoint.consecutive_failures or endpoint.failing_since:
            health = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        recorded = 0
        delivered: dict[tuple[int, int | None], list[int]] = {}
        retries: set[float] = set()
        for delivery, answer in sent:
            if answer.ok:
                health.failing_since, health.consecutive_failures = None, 0
                health.circuit_open_until = None
                delivered.setdefault((delivery.attempts, answer.status), []).append(delivery.pk)
                outcomes[delivery.pk] = "delivered"
                continue
            fields: dict[str, Any] = {
                "attempts": delivery.attempts + 1,
                "last_response_status": answer.status,
                "last_error": (answer.error or f"answered {answer.status}")[:500],
                "updated_at": moment,
            }
            outcomes[delivery.pk] = _failed(fields, delivery.attempts + 1, health, moment)
            recorded += mine.filter(pk=delivery.pk, attempts=delivery.attempts).update(**fields)
            if fields.get("dispatched_at") is not None:
                retries.add(round((fields["next_attempt_at"] - moment).total_seconds(), 1))
        for (attempts, status), ids in delivered.items():
            recorded += mine.filter(pk__in=ids, attempts=attempts).update(
                status=Delivery.Status.SUCCEEDED,
                attempts=attempts + 1,
                delivered_at=moment,
                last_response_status=status,
                last_error="",
                updated_at=moment,
            )
        if recorded < len(sent):
            transaction.set_rollback(True)
            return {}
        Attempt.objects.bulk_create(
            Attempt(
                delivery_id=delivery.pk,
                number=delivery.attempts + 1,
                status=Attempt.Status.SUCCEEDED if answer.ok else Attempt.Status.FAILED,
                started_at=datetime.fromtimestamp(answer.started_at, tz=UTC),
                duration_ms=answer.duration_ms,
                response_status=answer.status,
                response_body=answer.body,
                error=answer.error,
            )
            for delivery, answer in sent
        )
        if health is not endpoint:
            health.save(update_fields=HEALTH_FIELDS)
            for name in HEALTH_FIELDS:
                setattr(endpoint, name, getattr(health, name))
        for delay in sorted(retries):
            _publish_on_commit(endpoint.pk, delay)
        wait = _circuit_wait(endpoint, moment)
        held = [d.pk for d in unsent]
        if wait and held:
            _postpone(endpoint, mine.filter(pk__in=held), moment + timedelta(seconds=wait), moment)
            outcomes |= dict.fromkeys(held, "deferred")
        elif held:  # given back, due now: this drain goes on with them, or wakes another
            mine.filter(pk__in=held).update(
                next_attempt_at=moment, dispatched_at=moment, updated_at=moment
            )
    return outcomes


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
    """Wake the endpoints of the due deliveries that no drain took: their wake was lost between
    commit and broker, they were not due yet when it came (a retry too far ahead for a
    countdown), or the drain that held them died mid-attempt (its lease ran out). A delivery
    whose drains died WEBHOOK_MAX_DISPATCHES times has failed (a message that kills its worker
    must not be retried forever). Returns how many deliveries were due."""
    moment = now()
    stale = moment - timedelta(seconds=settings.WEBHOOK_REDISPATCH_AFTER)
    due = list(
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=moment)
        .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale))
        .order_by("next_attempt_at")
        .values_list("pk", "endpoint_id", "next_attempt_at", "dispatched_at", "redispatches")[
            : limit or settings.WEBHOOK_SWEEP_BATCH
        ]
    )
    if not due:
        return 0
    # Only a drain's hold leaves a pending delivery's next attempt after its dispatch (the end
    # of the drain's lease); every other write sets both to the same time, or the dispatch
    # later, or none. Due again past that, no outcome came: its drain died. (Whatever the
    # lease's length was then: the settings may have changed since.)
    died = {pk: count for pk, _, at, sent, count in due if sent is not None and at > sent}
    # Failed once its deaths reach the limit, this one included: drains no longer take it
    # (_hold), so nothing else would end it.
    poison = [
        pk for pk, _, _, _, count in due if count + (pk in died) >= settings.WEBHOOK_MAX_DISPATCHES
    ]
    again = [(pk, endpoint_id) for pk, endpoint_id, *_ in due if pk not in poison]
    # Only the rows still due: a drain may have taken one since it was read.
    still_due = Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=moment)
    with transaction.atomic():
        still_due.filter(pk__in=poison).update(
            status=Delivery.Status.FAILED,
            last_error="sent again and again without an outcome (its worker dies?)",
            updated_at=moment,
        )
        still_due.filter(pk__in=[pk for pk, _ in again if pk in died]).update(
            redispatches=F("redispatches") + 1,
            last_error=NO_OUTCOME,
        )
        still_due.filter(pk__in=[pk for pk, _ in again]).update(
            dispatched_at=moment, updated_at=moment
        )
        for endpoint_id in sorted({endpoint_id for _, endpoint_id in again}):
            _publish_on_commit(endpoint_id)
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
        for endpoint_id in sorted({d.endpoint_id for d in deliveries}):
            _publish_on_commit(endpoint_id)
        Notice.objects.create(
            kind=Notice.Kind.REDELIVERED,
            actor=actor,
            message=f"{count} deliveries sent again ({', '.join(map(str, ids[:50]))}). "
            f"Reason: {reason.strip()}",
        )
    return count
