"""What a booking tells its client: one event per change a client cares about, written with the
change (the saga engine writes the rows `announce` returns with the transition, all or nothing,
so a change rolled back tells nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import DateTimeField, Model

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


# The client's event for each transition of the booking's saga that a client cares about.
EVENTS = {
    "started": "created",
    "completed": "completed",
    "compensated": "cancelled",
    "attention_required": "requires_attention",
    "resolved": "resolved",
}


def announce(booking: Booking, transition: str, attempts: Callable[[], list[Any]]) -> list[Model]:
    """The outbox rows of `booking.<type>` for the saga's `transition` (none for a transition
    the client is not told about), with the booking's API representation as it is once the
    transition is written (`attempts()`: its saga's attempts then), to be written with it."""
    from .api.serializers import BookingSerializer

    type = EVENTS.get(transition)
    if type is None:
        return []
    extra: dict[str, Any] = {}
    if type == "cancelled":
        extra["reason"] = booking.cancellation_reason
    elif type == "requires_attention":
        extra["message"] = attention_message(booking)
    # Stamped now: a new booking is inserted with these times (models.WrittenAt), so its
    # booking.created event shows exactly what is stored; a changed one's updated_at is stamped
    # again by the write, microseconds later.
    for name in ("created_at", "updated_at"):
        field = booking._meta.get_field(name)
        assert isinstance(field, DateTimeField)
        field.pre_save(booking, booking._state.adding)
    represented = BookingSerializer(booking, context={"attempts": attempts()}).data
    booking.events += 1  # written with the transition and the event, or not at all
    return webhooks.outbox(
        owner_id=booking.owner_id,
        type=f"booking.{type}",
        subject_id=str(booking.pk),
        data={**represented, **extra},
        sequence=booking.events,
    )


def send(rows: list[Any]) -> None:
    """The outbox rows are committed: send their deliveries."""
    webhooks.send(rows)


def attention_message(booking: Booking) -> str:
    """Why a booking requires attention, in words its client can act on (the operator's reason
    stays internal)."""
    if booking.cancellation_reason:
        return ATTENTION_UNDOING.format(reason=booking.get_cancellation_reason_display())
    if booking.room_held() and booking.payment_held():
        return ATTENTION_HELD.format(email=booking.guest_email)
    return ATTENTION_OTHER
