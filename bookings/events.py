"""What a booking tells its client: one event per change a client cares about, written by the
webhooks outbox in the transaction of the change (so a change rolled back tells nothing)."""

from __future__ import annotations

from typing import Any

from webhooks import services as webhooks

from .models import Booking

# What a client can do about a booking that requires attention, by what it still holds.
ATTENTION_HELD = (
    "Your booking is confirmed and paid (the card is held), but we could not send the "
    "confirmation e-mail to {email}. Nothing is needed from you; an operator will contact the "
    "guest. If the address is wrong, cancel and book again with the right one."
)
ATTENTION_UNDOING = (
    "We could not finish cancelling your booking automatically ({reason}): a hold on the card "
    "or on the room may still be in place. Nothing is needed from you; an operator is on it and "
    "you will receive booking.resolved when it is done. Do not book again for the same stay yet."
)
ATTENTION_OTHER = (
    "Your booking stopped and an operator is looking at it. Nothing is needed from you; you will "
    "receive booking.resolved when it is settled."
)


def emit(booking: Booking, type: str, **extra: Any) -> None:
    """Publish `booking.<type>` with the booking's API representation (and `extra`), inside the
    caller's transaction, after the booking's transition."""
    from .api.serializers import BookingSerializer

    # Outside a transaction (the engine's one-statement path) this raises before any query, and
    # the engine records the outcome again under lock, in a transaction.
    webhooks.ensure_in_transaction()
    data = {**BookingSerializer(booking).data, **extra}
    webhooks.publish(
        owner=booking.owner, type=f"booking.{type}", subject_id=str(booking.pk), data=data
    )


def attention_message(booking: Booking) -> str:
    """Why a booking requires attention, in words its client can act on (the operator's reason
    stays internal)."""
    if booking.cancellation_reason:
        return ATTENTION_UNDOING.format(reason=booking.get_cancellation_reason_display())
    if booking.room_held() and booking.payment_held():
        return ATTENTION_HELD.format(email=booking.guest_email)
    return ATTENTION_OTHER
