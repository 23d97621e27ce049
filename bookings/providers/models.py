"""The records of the providers the product runs itself: its fraud decisions and deny list, its
room reservations, its sent e-mail, and what operators say they did at an outside provider by
hand. Each effect's row is keyed by the idempotency key the caller sent, so the same request
always gets the same answer.

Keys and references are unique by a constraint rather than unique=True, which on PostgreSQL would
add a LIKE-pattern index beside each unique one: nothing in the application searches them by
pattern (only test helpers do, on small tables), and every request would maintain it."""

from django.db import models


def unique(model: str, *fields: str) -> list[models.BaseConstraint]:
    return [models.UniqueConstraint(fields=[f], name=f"{model}_{f}_unique") for f in fields]


class FraudScreeningRecord(models.Model):
    """One fraud decision with its reason (the rule that decided, or none)."""

    idempotency_key = models.CharField(max_length=200)
    reference = models.CharField(max_length=40)
    email = models.EmailField()
    approved = models.BooleanField()
    reason = models.CharField(max_length=120, blank=True)
    # Which rule rejected ("" when approved): deny_list, email_velocity, payment_velocity, ...
    rule = models.CharField(max_length=32, blank=True)
    # A digest of the payment token, to count bookings per payment method without storing it.
    payment_method_digest = models.CharField(max_length=64, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = unique("fraudscreening", "idempotency_key", "reference")
        indexes = [
            models.Index(fields=["email", "created_at"], name="fraud_email_velocity"),
            models.Index(
                fields=["payment_method_digest", "created_at"], name="fraud_method_velocity"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {'approved' if self.approved else 'rejected'}"


class FraudDenyEntry(models.Model):
    """An e-mail address or a whole domain the fraud rules reject, managed in the admin."""

    class Kind(models.TextChoices):
        EMAIL = "email", "e-mail address"
        DOMAIN = "domain", "domain"

    kind = models.CharField(max_length=6, choices=Kind.choices)
    value = models.CharField(max_length=254, help_text="Stored in lower case.")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "fraud deny-list entry"
        verbose_name_plural = "fraud deny list"
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="frauddenyentry_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.value}"

    def save(self, *args, **kwargs) -> None:
        self.value = self.value.strip().lower().lstrip("@")
        super().save(*args, **kwargs)


class InventoryReservation(models.Model):
    class Status(models.TextChoices):
        RESERVED = "reserved"
        UNAVAILABLE = "unavailable"
        RELEASED = "released"

    idempotency_key = models.CharField(max_length=200)
    reference = models.CharField(max_length=40)
    resource = models.ForeignKey("bookings.Resource", on_delete=models.PROTECT)
    check_in = models.DateField()
    check_out = models.DateField()
    status = models.CharField(max_length=12, choices=Status.choices)
    release_key = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # A stay is counted against the reservations that end after it starts (inventory.py):
        # led by check_out, the index reads only those, a set bounded by how far ahead bookings
        # go, and never the past stays that pile up over the years (led by check_in, it read
        # every stay that started before this one ends, the whole history included).
        indexes = [
            models.Index(fields=["resource", "status", "check_out"], name="reservation_ends"),
        ]
        constraints = unique("inventoryreservation", "idempotency_key", "reference")

    def __str__(self) -> str:
        return f"{self.reference} {self.status}"


class EmailRecord(models.Model):
    class Status(models.TextChoices):
        SENT = "sent"
        FAILED = "failed"

    idempotency_key = models.CharField(max_length=200)
    to = models.EmailField()
    template = models.CharField(max_length=64)
    subject = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.FAILED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=255, blank=True)
    message_id = models.CharField(max_length=64, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = unique("emailrecord", "idempotency_key")

    def __str__(self) -> str:
        return f"{self.template} to {self.to}: {self.status}"


class ProviderResolution(models.Model):
    """What an operator says was done at a provider by hand when resolving a booking (for
    example a void made in the gateway's dashboard). The consistency check honours it: the
    provider may still show the effect, but an operator has answered for it."""

    class Kind(models.TextChoices):
        PAYMENTS = "payments"
        INVENTORY = "inventory"

    class Action(models.TextChoices):
        VOIDED = "voided", "authorization voided by hand"
        RELEASED = "released", "room released by hand"

    booking = models.ForeignKey(
        "bookings.Booking", on_delete=models.CASCADE, related_name="provider_resolutions"
    )
    provider = models.CharField(max_length=12, choices=Kind.choices)
    action = models.CharField(max_length=12, choices=Action.choices)
    reference = models.CharField(max_length=64, blank=True, help_text="the provider's reference")
    note = models.CharField(max_length=500)
    recorded_by = models.CharField(max_length=150)
    recorded_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.reference}".strip()
