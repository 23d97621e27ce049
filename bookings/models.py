"""Resources and bookings. A booking's state moves only through the @transition methods below;
each one changes database fields and nothing else (side effects run in the saga's Celery tasks,
which call these transitions to record their outcome)."""

import secrets
import zoneinfo
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django_fsm import RETURN_VALUE, ConcurrentTransitionMixin, FSMField, transition

from sagas.models import time_ordered_id


def default_timezone() -> str:
    """A new resource's timezone: BOOKING_DEFAULT_TIMEZONE (by default TIME_ZONE)."""
    name: str = settings.BOOKING_DEFAULT_TIMEZONE
    return name


def validate_timezone(name: str) -> None:
    """An IANA timezone name this machine's tz database knows, e.g. Europe/Paris."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"Unknown timezone {name!r}: give an IANA name such as Europe/Paris."
        ) from None


class Resource(models.Model):
    """A bookable unit: at most `capacity` confirmed bookings on any night. Its dates (check-in,
    check-out, "today") are local dates in its own timezone."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=120)
    capacity = models.PositiveIntegerField(help_text="Bookings it can hold on one night.")
    nightly_price = models.DecimalField(
        max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.00"))]
    )
    currency = models.CharField(max_length=3, default="EUR")
    active = models.BooleanField(default=True)
    timezone = models.CharField(
        max_length=64,
        default=default_timezone,
        validators=[validate_timezone],
        help_text="IANA name, e.g. America/Los_Angeles: where its 'today' is judged.",
    )

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def local_today(self) -> date:
        """Today's date where the resource is: a hotel west of UTC still takes same-day
        bookings in its evening, when the UTC date has already moved on."""
        return timezone.localdate(timezone=zoneinfo.ZoneInfo(self.timezone))


def new_reference() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "BK-" + "".join(secrets.choice(alphabet) for _ in range(8))


class WrittenAt(models.DateTimeField):
    """auto_now / auto_now_add, except that a new row keeps a time it already carries: a new
    booking is represented (its booking.created event, the API's answer) before the one write
    that inserts it, with the times it is then written with (bookings/events.py stamps them)."""

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = getattr(model_instance, self.attname)
        if add and value is not None:
            return value
        return super().pre_save(model_instance, add)


class Booking(ConcurrentTransitionMixin, models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        FRAUD_CHECK = "fraud_check"
        PREAUTHORIZING = "preauthorizing"
        CONFIRMING = "confirming"
        NOTIFYING = "notifying"
        COMPLETED = "completed"
        COMPENSATING = "compensating"
        CANCELLED = "cancelled"
        REQUIRES_ATTENTION = "requires_attention"

    class CancellationReason(models.TextChoices):
        FRAUD_REJECTED = "fraud_rejected"
        PAYMENT_DECLINED = "payment_declined"
        UNAVAILABLE = "unavailable"
        STEP_FAILED = "step_failed"
        TIMEOUT = "timeout"
        CUSTOMER_CANCELLED = "customer_cancelled"
        OPERATOR_CANCELLED = "operator_cancelled"

    class PaymentStatus(models.TextChoices):
        NONE = "none"
        AUTHORIZED = "authorized"
        DECLINED = "declined"
        VOIDED = "voided"

    class RoomStatus(models.TextChoices):
        NONE = "none"
        RESERVED = "reserved"
        RELEASED = "released"

    IN_FLIGHT = (
        State.PENDING,
        State.FRAUD_CHECK,
        State.PREAUTHORIZING,
        State.CONFIRMING,
        State.NOTIFYING,
        State.COMPENSATING,
    )
    TERMINAL = (State.COMPLETED, State.CANCELLED, State.REQUIRES_ATTENTION)
    id = models.UUIDField(primary_key=True, default=time_ordered_id, editable=False)
    reference = models.CharField(max_length=16, default=new_reference, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="bookings",
    )
    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="bookings")
    check_in = models.DateField()
    check_out = models.DateField()
    guest_name = models.CharField(max_length=120)
    guest_email = models.EmailField()
    payment_token = models.CharField(max_length=64, help_text="Provider token; never card data.")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)

    state = FSMField(default=State.PENDING, choices=State.choices, protected=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    cancellation_reason = models.CharField(
        max_length=24, choices=CancellationReason.choices, blank=True
    )
    attention_reason = models.CharField(max_length=255, blank=True)
    fraud_decision = models.CharField(max_length=16, blank=True)
    payment_status = models.CharField(
        max_length=12, choices=PaymentStatus.choices, default=PaymentStatus.NONE
    )
    authorization_ref = models.CharField(max_length=64, blank=True)
    room_status = models.CharField(
        max_length=12, choices=RoomStatus.choices, default=RoomStatus.NONE
    )
    reservation_ref = models.CharField(max_length=64, blank=True)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    cancellation_sent_at = models.DateTimeField(null=True, blank=True)
    saga = models.OneToOneField(
        "sagas.Saga", on_delete=models.PROTECT, null=True, blank=True, related_name="booking"
    )
    events = models.PositiveIntegerField(
        default=0,
        help_text="How many events its client was told of (bookings/events.py): the next one's "
        "sequence number is this plus one. Written with the event, so two writers of one "
        "booking cannot give two events the same number.",
    )
    created_at = WrittenAt(auto_now_add=True, db_index=True)
    updated_at = WrittenAt(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Plain b-tree indexes: db_index on a CharField adds a second, LIKE-pattern index on
            # PostgreSQL, which no query here uses and every state change would maintain.
            models.Index(fields=["state"], name="booking_state"),
            models.Index(fields=["authorization_ref"], name="booking_authorization_ref"),
            models.Index(fields=["reservation_ref"], name="booking_reservation_ref"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(check_out__gt=models.F("check_in")),
                name="booking_checkout_after_checkin",
            ),
            # A constraint, not unique=True: that would add the LIKE-pattern index too, and with
            # random references each new booking dirties a random page of both (the reference is
            # only ever matched whole, or case-insensitively, which neither index serves).
            models.UniqueConstraint(fields=["reference"], name="booking_reference_unique"),
        ]
        permissions = [
            ("retry_booking", "Can retry a booking's failed or stuck step"),
            ("compensate_booking", "Can compensate (undo) a booking"),
            ("resolve_booking", "Can resolve a booking by hand"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} ({self.state})"

    @property
    def nights(self) -> int:
        return (self.check_out - self.check_in).days

    # --- guards ------------------------------------------------------------------------------

    def fraud_approved(self) -> bool:
        return self.fraud_decision == "approved"

    def payment_held(self) -> bool:
        return self.payment_status == self.PaymentStatus.AUTHORIZED and bool(self.authorization_ref)

    def room_held(self) -> bool:
        return self.room_status == self.RoomStatus.RESERVED and bool(self.reservation_ref)

    def confirmation_sent(self) -> bool:
        return self.confirmation_sent_at is not None

    def nothing_held(self) -> bool:
        return not self.payment_held() and not self.room_held()

    # --- transitions (database only) ------------------------------------------------------------

    def _moved(self) -> None:
        self.state_changed_at = timezone.now()

    @transition(field=state, source=State.PENDING, target=State.FRAUD_CHECK)
    def start_saga(self) -> None:
        self._moved()

    @transition(
        field=state,
        source=State.FRAUD_CHECK,
        target=State.PREAUTHORIZING,
        conditions=[fraud_approved],
    )
    def begin_preauthorization(self) -> None:
        self._moved()

    @transition(
        field=state, source=State.PREAUTHORIZING, target=State.CONFIRMING, conditions=[payment_held]
    )
    def begin_confirmation(self) -> None:
        self._moved()

    @transition(
        field=state,
        source=State.CONFIRMING,
        target=State.NOTIFYING,
        conditions=[payment_held, room_held],
    )
    def begin_notification(self) -> None:
        self._moved()

    @transition(
        field=state,
        source=State.NOTIFYING,
        target=State.COMPLETED,
        conditions=[payment_held, room_held, confirmation_sent],
    )
    def complete(self) -> None:
        self._moved()

    @transition(
        field=state,
        source=[
            State.FRAUD_CHECK,
            State.PREAUTHORIZING,
            State.CONFIRMING,
            State.NOTIFYING,
            State.COMPLETED,
            State.REQUIRES_ATTENTION,
        ],
        target=State.COMPENSATING,
    )
    def begin_compensation(self, reason: str) -> None:
        self._moved()
        valid = {c.value for c in self.CancellationReason}
        self.cancellation_reason = (
            reason if reason in valid else self.CancellationReason.STEP_FAILED
        )
        self.attention_reason = ""

    @transition(
        field=state, source=State.COMPENSATING, target=State.CANCELLED, conditions=[nothing_held]
    )
    def finish_cancellation(self) -> None:
        self._moved()

    @transition(
        field=state,
        source=[
            State.FRAUD_CHECK,
            State.PREAUTHORIZING,
            State.CONFIRMING,
            State.NOTIFYING,
            State.COMPENSATING,
        ],
        target=State.REQUIRES_ATTENTION,
    )
    def require_attention(self, reason: str) -> None:
        self._moved()
        self.attention_reason = reason[:255]

    @transition(
        field=state,
        source=State.REQUIRES_ATTENTION,
        target=RETURN_VALUE(
            State.FRAUD_CHECK, State.PREAUTHORIZING, State.CONFIRMING, State.NOTIFYING
        ),
        custom={"admin": False},
    )
    def resume(self, state: str) -> str:
        """Back to the in-flight `state` of the step that runs again (the saga's definition
        says which state each step runs in)."""
        self._moved()
        self.attention_reason = ""
        return state

    @transition(
        field=state,
        source=State.REQUIRES_ATTENTION,
        target=State.COMPENSATING,
        conditions=[lambda b: bool(b.cancellation_reason)],
        custom={"admin": False},
    )
    def resume_compensation(self) -> None:
        self._moved()
        self.attention_reason = ""

    @transition(
        field=state,
        source=State.REQUIRES_ATTENTION,
        target=State.COMPLETED,
        permission="bookings.resolve_booking",
        custom={"admin": False},
    )
    def resolve_completed(self) -> None:
        self._moved()
        self.attention_reason = ""

    @transition(
        field=state,
        source=State.REQUIRES_ATTENTION,
        target=State.CANCELLED,
        permission="bookings.resolve_booking",
        custom={"admin": False},
    )
    def resolve_cancelled(self) -> None:
        self._moved()
        self.attention_reason = ""
        if not self.cancellation_reason:
            self.cancellation_reason = self.CancellationReason.OPERATOR_CANCELLED


class IdempotencyKey(models.Model):
    """The first response to a client's `POST /api/v1/bookings/` with an Idempotency-Key, kept
    until `expires_at` so that a retry with the same key gets the same answer. One row per
    (client, key): the unique constraint is what makes concurrent retries create one booking."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys"
    )
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request body.")
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    booking = models.ForeignKey(
        Booking, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="idempotencykey_one_per_client")
        ]
        indexes = [models.Index(fields=["owner", "expires_at"], name="idempotencykey_expiry")]

    def __str__(self) -> str:
        return f"{self.key} ({self.response_status})"
