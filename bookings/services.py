"""State-changing operations on bookings. The API, the admin, the management commands and the
tests all call these, so they can never disagree. Each runs in one transaction and sends its
messages only after commit (the saga engine does that)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from config import queries
from sagas import engine
from sagas.errors import SagaStateError
from sagas.models import Saga, time_ordered_id
from webhooks.models import Event

from .errors import ApplicationError
from .models import Booking, Resource
from .providers.base import UNDONE_STATUS
from .providers.models import ProviderResolution
from .saga import BOOKING_SAGA, SAGA_TYPE
from .selectors import compensation_plan

# A provider token, never card data: the sandbox's tok_..., a Stripe PaymentMethod pm_...
TOKEN_PATTERN = re.compile(r"^(tok|pm)_[A-Za-z0-9_]{1,60}$")


def _validate(
    *,
    today: date,
    check_in: date,
    check_out: date,
    guest_name: str,
    guest_email: str,
    payment_token: str,
) -> dict[str, list[str]]:
    """Every field's errors, empty when the booking may be made. `today` is the resource's
    local date: "in the past" and the horizon are judged where the guest sleeps. The horizon
    (furthest check-in, longest stay) comes from settings, read per call so that a deployment
    can change it."""
    errors: dict[str, list[str]] = {}
    max_days_ahead: int = settings.BOOKING_MAX_DAYS_AHEAD
    max_nights: int = settings.BOOKING_MAX_NIGHTS
    if check_in < today:
        errors.setdefault("check_in", []).append("Check-in cannot be in the past.")
    elif (check_in - today).days > max_days_ahead:
        furthest = today + timedelta(days=max_days_ahead)
        errors.setdefault("check_in", []).append(
            f"Check-in can be at most {max_days_ahead} days ahead (on or before {furthest})."
        )
    if check_out <= check_in:
        errors.setdefault("check_out", []).append("Check-out must be after check-in.")
    elif (check_out - check_in).days > max_nights:
        errors.setdefault("check_out", []).append(f"A stay is at most {max_nights} nights.")
    if not guest_name.strip() or len(guest_name) > 120 or "\x00" in guest_name:
        errors.setdefault("guest_name", []).append("Give a name of 1 to 120 characters.")
    try:
        validate_email(guest_email)
    except ValidationError:
        errors.setdefault("guest_email", []).append("Enter a valid e-mail address.")
    if not TOKEN_PATTERN.match(payment_token):
        errors.setdefault("payment_token", []).append(
            "A payment token looks like tok_... or pm_... (letters, digits, underscores)."
        )
    return errors


def _bookable(code: str) -> Resource | None:
    """The active resource with this code; asked with every booking."""
    return next(iter(queries.select(Resource, "{code} = %s AND {active}", [code])), None)


def booking_create(
    *,
    resource_code: str,
    check_in: date,
    check_out: date,
    guest_name: str,
    guest_email: str,
    payment_token: str,
    owner: Any = None,
    also: Callable[[Booking, dict[str, Any]], Sequence[Model]] | None = None,
) -> Booking:
    """Create a booking and start its saga. The amount is computed here (nightly price x nights);
    the first step's message leaves after commit. `also(booking, shown)`: called with the new
    booking (not saved yet) and its API representation as it is written (its booking.created
    event's data), returns new rows written with it, all or nothing (engine.start): the
    request's idempotency key with its answer, say; an API answer is `shown` itself."""
    resource = _bookable(resource_code)
    errors = _validate(
        # An unknown resource is refused below; its dates are still checked against the
        # deployment's own date so that every field's errors come back at once.
        today=resource.local_today() if resource else timezone.localdate(),
        check_in=check_in,
        check_out=check_out,
        guest_name=guest_name,
        guest_email=guest_email,
        payment_token=payment_token,
    )
    if resource is None:
        errors.setdefault("resource", []).append(f"No bookable resource {resource_code!r}.")
    if errors:
        raise ApplicationError("Invalid booking.", status=400, code="invalid", extra=errors)
    assert resource is not None
    nights = (check_out - check_in).days
    amount = (resource.nightly_price * nights).quantize(Decimal("0.01"))
    saga_id = time_ordered_id()
    # Inserted by the saga's start, already in its first state, with the saga, its first
    # attempt and its booking.created event: all or nothing (one statement on PostgreSQL).
    booking = Booking(
        owner=owner,
        resource=resource,
        check_in=check_in,
        check_out=check_out,
        guest_name=guest_name.strip(),
        guest_email=guest_email,
        payment_token=payment_token,
        amount=amount,
        currency=resource.currency,
        saga_id=saga_id,
    )

    def with_booking(announced: list[Model]) -> Sequence[Model]:
        assert also is not None
        created = next(row for row in announced if isinstance(row, Event))
        return also(booking, created.data)

    engine.start(
        saga_type=SAGA_TYPE,
        target_id=str(booking.pk),
        saga_id=saga_id,
        target=booking,
        also=with_booking if also else None,
        payload={
            "reference": booking.reference,
            "resource": resource.code,
            "resource_name": resource.name,
            "check_in": check_in.isoformat(),
            "check_out": check_out.isoformat(),
            "guest_name": booking.guest_name,
            "guest_email": guest_email,
            # No payment token: a secret is read from the booking when its step runs, never
            # copied into the saga (payloads and attempts are shown to operators and logged).
            "amount": str(amount),
            "currency": resource.currency,
        },
    )
    return booking


@contextmanager
def _operating_on(booking: Booking, expected_state: str | None, code: str) -> Iterator[None]:
    """One transaction with the saga and booking rows locked (in the engine's order: saga
    first), the booking's state re-checked, and engine refusals turned into a 409."""
    try:
        with transaction.atomic():
            assert booking.saga_id is not None  # a booking is created with its saga
            Saga.objects.select_for_update().filter(pk=booking.saga_id).exists()
            current = Booking.objects.select_for_update().get(pk=booking.pk)
            if expected_state is not None and current.state != expected_state:
                raise ApplicationError(
                    f"Booking {booking.reference} moved to {current.state} meanwhile "
                    f"(it was {expected_state}); nothing was done. Look again and retry.",
                    status=409,
                    code="state_changed",
                )
            yield
    except SagaStateError as exc:
        raise ApplicationError(
            f"Booking {booking.reference}: {exc}.", status=409, code=code
        ) from exc


def booking_cancel(
    *, booking: Booking, actor: str = "", reason: str = "", expected_state: str | None = None
) -> str:
    """A customer's cancel: at the next step boundary if the saga is in flight, at once if it is
    completed. Returns "requested" or "compensating"; 409 when the booking cannot be cancelled,
    saying why in the client's terms."""
    code = Booking.CancellationReason.CUSTOMER_CANCELLED
    try:
        return _turn_back(booking, code, actor, reason, expected_state, "not_cancellable")
    except ApplicationError as refused:
        if refused.code != "not_cancellable":
            raise
        state = Booking.objects.filter(pk=booking.pk).values_list("state", flat=True).first()
        why = CANCEL_REFUSALS.get(state or "")
        if why is None:  # in flight, its cancel requested: the engine's words say so
            raise
        raise ApplicationError(
            f"Booking {booking.reference}: {why}.", status=409, code="not_cancellable"
        ) from refused


# Why a client's cancel is refused, by the booking's state.
CANCEL_REFUSALS: dict[str, str] = {
    Booking.State.CANCELLED: "it is cancelled already",
    Booking.State.COMPENSATING: "its cancellation is already under way",
    Booking.State.REQUIRES_ATTENTION: (
        "it is being undone and waits for an operator; nothing more is needed from you, and "
        "booking.resolved follows when it is settled"
    ),
}


def booking_compensate(
    *, booking: Booking, actor: str, reason: str, expected_state: str | None = None
) -> str:
    """An operator's 'compensate now': undo every completed step in reverse order (at the next
    step boundary if a step is in flight). Returns "requested" or "compensating"."""
    _require_reason(reason)
    code = Booking.CancellationReason.OPERATOR_CANCELLED
    return _turn_back(booking, code, actor, reason, expected_state, "not_compensatable")


def _turn_back(
    booking: Booking, code: str, actor: str, note: str, expected_state: str | None, refusal: str
) -> str:
    with _operating_on(booking, expected_state, refusal):
        return engine.turn_back(saga_id=booking.saga_id, reason=code, actor=actor, note=note)


def booking_retry(
    *, booking: Booking, actor: str, reason: str, expected_state: str | None = None
) -> str:
    """An operator's retry of the failed step (with a fresh retry budget) or of a stuck one
    (its message sent again now). Returns a description of what was done."""
    _require_reason(reason)
    with _operating_on(booking, expected_state, "not_retriable"):
        return engine.retry(saga_id=booking.saga_id, actor=actor, reason=reason)


def booking_resolve(
    *,
    booking: Booking,
    outcome: str,
    actor: str,
    reason: str,
    expected_state: str | None = None,
    done_at_provider: str = "",
) -> None:
    """An operator closes a booking that requires attention by hand, as completed or
    cancelled, after fixing what needed fixing outside the system. Resolving as cancelled,
    `done_at_provider` says what the operator did at the providers for the undo steps that had
    not run (for example "voided by hand in the gateway's dashboard, ref ..."): it is recorded
    for each of them, and the consistency check honours it."""
    _require_reason(reason)
    saga_outcome = {"completed": "completed", "cancelled": "compensated"}.get(outcome)
    if saga_outcome is None:
        raise ApplicationError("Resolve as 'completed' or 'cancelled'.", code="invalid")
    with _operating_on(booking, expected_state, "not_resolvable"):
        undone_by_hand = (
            provider_undos_pending(booking) if outcome == "cancelled" and done_at_provider else []
        )
        engine.resolve(saga_id=booking.saga_id, outcome=saga_outcome, actor=actor, reason=reason)
        for undo in undone_by_hand:
            ProviderResolution.objects.create(
                booking=booking, **undo, note=done_at_provider.strip()[:500], recorded_by=actor
            )


def provider_undos_pending(booking: Booking) -> list[dict[str, str]]:
    """The provider effects of the booking that no compensation has undone yet (what an
    operator resolving it as cancelled answers for): provider, action and reference each."""
    pending = []
    for step in compensation_plan(booking):
        kind = BOOKING_SAGA.step(step["step"]).meta["provider"]
        if kind in UNDONE_STATUS:  # a sent e-mail is not undone at the provider
            pending.append(
                {"provider": kind, "action": UNDONE_STATUS[kind], "reference": step["reference"]}
            )
    return pending


def _require_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise ApplicationError("A reason is required.", code="reason_required")
