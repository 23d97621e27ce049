"""The sandbox payment gateway's ledger: what the outside gateway would remember, one row per
authorization, keyed by the idempotency key the caller sent.

The table keeps the name it had when the sandbox lived in bookings.providers (migration
0001_move_from_providers moves the model without touching the data)."""

from django.db import models

from bookings.providers.models import unique


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
        db_table = "providers_paymentauthorization"
        constraints = unique("paymentauthorization", "idempotency_key", "reference")

    def __str__(self) -> str:
        return f"{self.reference} {self.status}"
