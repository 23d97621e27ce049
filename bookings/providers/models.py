"""The sandbox providers' own ledgers: what the outside system would remember. Each row is keyed
by the idempotency key the caller sent, so the same request always gets the same answer.

Keys and references are unique by a constraint rather than unique=True, which on PostgreSQL would
add a LIKE-pattern index beside each unique one: nothing in the application searches them by
pattern (only test helpers do, on small tables), and every request would maintain it."""

from django.db import models


def unique(model: str, *fields: str) -> list[models.BaseConstraint]:
    return [models.UniqueConstraint(fields=[f], name=f"{model}_{f}_unique") for f in fields]


class FraudScreeningRecord(models.Model):
    idempotency_key = models.CharField(max_length=200)
    reference = models.CharField(max_length=40)
    email = models.EmailField()
    approved = models.BooleanField()
    reason = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = unique("fraudscreening", "idempotency_key", "reference")

    def __str__(self) -> str:
        return f"{self.reference} {'approved' if self.approved else 'rejected'}"


class PaymentAuthorization(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"  # only transient failures so far
        AUTHORIZED = "authorized"
        DECLINED = "declined"
        VOIDED = "voided"

    idempotency_key = models.CharField(max_length=200)
    reference = models.CharField(max_length=40)
    token = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    void_attempts = models.PositiveIntegerField(default=0)
    void_key = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    authorized_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = unique("paymentauthorization", "idempotency_key", "reference")

    def __str__(self) -> str:
        return f"{self.reference} {self.status}"


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
        indexes = [
            models.Index(fields=["resource", "status", "check_in"], name="reservation_lookup"),
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
