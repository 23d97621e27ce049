"""The booking saga: fraud check -> payment pre-authorization (undo: void) -> room confirmation
(undo: release) -> confirmation e-mail (after the pivot: retried, never undoes the booking; undo
of a completed booking: a cancellation e-mail).

Actions run in Celery workers, outside any transaction, and only call providers. The hooks run
inside the engine's transaction and only move the booking's state machine."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Model
from django.utils import timezone

from sagas.definition import ACTION, RetryPolicy, SagaDefinition, SagaHooks, Step, StepContext
from sagas.errors import PermanentError

from . import events
from .models import Booking
from .providers import base as providers
from .providers.guard import guarded

SAGA_TYPE = "booking"


# --- actions and compensations (side effects, outside transactions) ------------------------


def fraud_check(ctx: StepContext) -> dict[str, Any]:
    p = ctx.payload
    decision = providers.fraud().screen(
        idempotency_key=ctx.idempotency_key,
        email=p["guest_email"],
        name=p["guest_name"],
        amount=Decimal(p["amount"]),
        currency=p["currency"],
        payment_method=_payment_token(ctx),  # velocity per payment method
    )
    if not decision.approved:
        raise PermanentError(
            f"fraud screening rejected the booking: {decision.reason}",
            code="fraud_rejected",
            data={"screening_ref": decision.reference},
        )
    return {"decision": "approved", "screening_ref": decision.reference}


def _payment_token(ctx: StepContext) -> str:
    """The booking's payment token, read with the attempt (BookingHooks.secrets): it is a
    secret, so it is never copied into the saga's payload, an attempt's request or an error."""
    return ctx.secrets["payment_token"]


def preauthorize(ctx: StepContext) -> dict[str, Any]:
    p = ctx.payload
    result = providers.payments().authorize(
        idempotency_key=ctx.idempotency_key,
        token=_payment_token(ctx),
        amount=Decimal(p["amount"]),
        currency=p["currency"],
    )
    if result.status != "authorized":
        raise PermanentError(
            f"payment declined: {result.decline_reason or result.status}",
            code="payment_declined",
            data={"authorization_ref": result.reference},
        )
    return {"authorization_ref": result.reference, "amount": str(result.amount)}


def void_authorization(ctx: StepContext) -> dict[str, Any]:
    ref = ctx.results.get("preauthorize", {}).get("authorization_ref")
    if not ref:  # the authorization's outcome was unknown: find it by the action's key
        found = providers.payments().lookup(idempotency_key=ctx.action_key())
        ref = found.reference if found else ""
    if not ref:
        return {"authorization_ref": "", "void": "nothing to void"}
    result = providers.payments().void(idempotency_key=ctx.idempotency_key, authorization_ref=ref)
    return {"authorization_ref": result.reference, "void": result.status}


def confirm_room(ctx: StepContext) -> dict[str, Any]:
    p = ctx.payload
    reservation = providers.inventory().reserve(
        idempotency_key=ctx.idempotency_key,
        resource_code=p["resource"],
        check_in=date.fromisoformat(p["check_in"]),
        check_out=date.fromisoformat(p["check_out"]),
    )
    if reservation.status != "reserved":
        raise PermanentError(
            "no room available on the requested nights",
            code="unavailable",
            data={"reservation_ref": reservation.reference},
        )
    return {"reservation_ref": reservation.reference}


def release_room(ctx: StepContext) -> dict[str, Any]:
    ref = ctx.results.get("confirm", {}).get("reservation_ref")
    if not ref:  # the reservation's outcome was unknown: find it by the action's key
        found = providers.inventory().lookup(idempotency_key=ctx.action_key())
        ref = found.reference if found else ""
    if not ref:
        return {"reservation_ref": "", "release": "nothing to release"}
    result = providers.inventory().release(idempotency_key=ctx.idempotency_key, reservation_ref=ref)
    return {"reservation_ref": result.reference, "release": result.status}


def _email_context(p: dict[str, Any]) -> dict[str, Any]:
    nights = (date.fromisoformat(p["check_out"]) - date.fromisoformat(p["check_in"])).days
    return {**p, "nights": nights}


def send_confirmation(ctx: StepContext) -> dict[str, Any]:
    receipt = providers.email().send(
        idempotency_key=ctx.idempotency_key,
        to=ctx.payload["guest_email"],
        template="booking_confirmed",
        context=_email_context(ctx.payload),
    )
    return {"message_id": receipt.message_id}


def send_cancellation(ctx: StepContext) -> dict[str, Any]:
    receipt = providers.email().send(
        idempotency_key=ctx.idempotency_key,
        to=ctx.payload["guest_email"],
        template="booking_cancelled",
        context=_email_context(ctx.payload),
    )
    return {"message_id": receipt.message_id}


def _describe(*fields: str):
    def describe(payload: dict[str, Any], direction: str) -> dict[str, Any]:
        return {f: payload.get(f) for f in fields}

    return describe


# --- what each outcome records on the booking (database only, in the engine's transaction) -----


def _fraud_approved(booking: Booking, result: dict) -> None:
    booking.fraud_decision = "approved"
    booking.begin_preauthorization()


def _authorized(booking: Booking, result: dict) -> None:
    booking.payment_status = Booking.PaymentStatus.AUTHORIZED
    booking.authorization_ref = result["authorization_ref"]
    booking.begin_confirmation()


def _voided(booking: Booking, result: dict) -> None:
    booking.payment_status = Booking.PaymentStatus.VOIDED


def _reserved(booking: Booking, result: dict) -> None:
    booking.room_status = Booking.RoomStatus.RESERVED
    booking.reservation_ref = result["reservation_ref"]
    booking.begin_notification()


def _released(booking: Booking, result: dict) -> None:
    booking.room_status = Booking.RoomStatus.RELEASED


def _confirmation_sent(booking: Booking, result: dict) -> None:
    booking.confirmation_sent_at = timezone.now()


def _cancellation_sent(booking: Booking, result: dict) -> None:
    booking.cancellation_sent_at = timezone.now()


# --- hooks (database only, inside the engine's transaction) -----------------------------------


class BookingHooks(SagaHooks):
    def lock_target(self, saga: Any) -> Booking:
        return Booking.objects.select_for_update().get(saga_id=saga.pk)

    target_relation = "booking"
    target_related = ("resource",)  # its representation names the resource

    def load_target(self, saga: Any) -> Booking | None:
        try:
            return saga.booking  # read with the attempt (target_relation), or read now
        except Booking.DoesNotExist:
            return None

    def secrets(self, target: Booking | None) -> dict[str, str]:
        return {"payment_token": target.payment_token} if target is not None else {}

    def save_target(self, saga: Any, target: Booking) -> None:
        # One write per engine transaction, whatever the hooks changed; a new booking (the
        # saga's start) is inserted here together with its first transition.
        target.save()

    def started(self, saga: Any, target: Booking) -> None:
        target.saga = saga  # its representation reads the saga; both are written together
        target.start_saga()

    def step_succeeded(self, saga: Any, target: Booking, step: Step, result: dict) -> None:
        step.meta["succeeded"](target, result)

    def completed(self, saga: Any, target: Booking) -> None:
        target.complete()

    def compensation_started(self, saga: Any, target: Booking, reason: str) -> None:
        if reason == "fraud_rejected":
            target.fraud_decision = "rejected"
        elif reason == "payment_declined":
            target.payment_status = Booking.PaymentStatus.DECLINED
        target.begin_compensation(reason)

    def compensation_succeeded(self, saga: Any, target: Booking, step: Step, result: dict) -> None:
        step.meta["undone"](target, result)

    def compensated(self, saga: Any, target: Booking, reason: str) -> None:
        target.finish_cancellation()

    def attention_required(self, saga: Any, target: Booking, reason: str) -> None:
        target.require_attention(reason)

    def resumed(self, saga: Any, target: Booking, direction: str) -> None:
        if direction == ACTION:
            target.resume(step_state(saga.current_step))
        else:
            target.resume_compensation()

    def resolved(self, saga: Any, target: Booking, outcome: str, reason: str) -> None:
        if outcome == "completed":
            target.resolve_completed()
        else:
            target.resolve_cancelled()

    def announce(
        self, saga: Any, target: Booking, transition: str, attempts: Callable[[], list[Any]]
    ) -> list[Model]:
        return events.announce(target, transition, attempts)

    def announced(self, rows: list[Any]) -> None:
        events.send(rows)


# --- the definition ------------------------------------------------------------------------


def _queue(provider: str) -> str | None:
    """The Celery queue of a provider's steps (settings.BOOKING_QUEUES; empty: the default)."""
    return settings.BOOKING_QUEUES.get(provider) or None


PROVIDER_RETRY = RetryPolicy(max_attempts=5, initial_delay=1.0, backoff=2.0, max_delay=15.0)
UNDO_RETRY = RetryPolicy(max_attempts=6, initial_delay=1.0, backoff=2.0, max_delay=15.0)

BOOKING_SAGA = SagaDefinition(
    name=SAGA_TYPE,
    steps=(
        Step(
            "fraud_check",
            # Each side effect runs behind its provider's rate limit and circuit breaker
            # (providers/guard.py), on its provider's queue.
            action=guarded("fraud", fraud_check),
            retry=PROVIDER_RETRY,
            queue=_queue("fraud"),
            describe=_describe("guest_email", "guest_name", "amount", "currency"),
            label="Fraud check",
            meta={
                "state": Booking.State.FRAUD_CHECK,
                "succeeded": _fraud_approved,
                "provider": "fraud",
            },
        ),
        Step(
            "preauthorize",
            action=guarded("payments", preauthorize),
            compensation=guarded("payments", void_authorization),
            retry=PROVIDER_RETRY,
            queue=_queue("payments"),
            compensation_retry=UNDO_RETRY,
            describe=_describe("amount", "currency"),
            label="Payment pre-authorization",
            meta={
                "state": Booking.State.PREAUTHORIZING,
                "provider": "payments",
                "succeeded": _authorized,
                "undone": _voided,
                "reference": "authorization_ref",
            },
        ),
        Step(
            "confirm",
            action=guarded("inventory", confirm_room),
            compensation=guarded("inventory", release_room),
            retry=PROVIDER_RETRY,
            queue=_queue("inventory"),
            compensation_retry=UNDO_RETRY,
            describe=_describe("resource", "check_in", "check_out"),
            label="Room confirmation",
            meta={
                "state": Booking.State.CONFIRMING,
                "provider": "inventory",
                "succeeded": _reserved,
                "undone": _released,
                "reference": "reservation_ref",
            },
        ),
        Step(
            "send_email",
            action=guarded("email", send_confirmation),
            compensation=guarded("email", send_cancellation),
            retriable_only=True,
            # The cancellation e-mail must not hold the card or the room: if it cannot be sent,
            # the room is released and the authorization voided all the same.
            compensation_best_effort=True,
            queue=_queue("email"),
            retry=RetryPolicy(max_attempts=6, initial_delay=2.0, backoff=2.0, max_delay=20.0),
            compensation_retry=UNDO_RETRY,
            describe=_describe("guest_email"),
            label="Confirmation e-mail",
            meta={
                "state": Booking.State.NOTIFYING,
                "provider": "email",
                "succeeded": _confirmation_sent,
                "undone": _cancellation_sent,
                "reference": "message_id",
            },
        ),
    ),
    hooks=BookingHooks(),
)


def step_state(name: str) -> str:
    """The booking's state while step `name` runs."""
    return BOOKING_SAGA.step(name).meta["state"]


STEP_NAMES = tuple(step.name for step in BOOKING_SAGA.steps)
