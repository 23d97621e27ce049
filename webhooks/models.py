"""Webhooks: a client's endpoints, the events written with the transitions that cause them (a
transactional outbox), one delivery per event and endpoint, and one row per attempt."""

from __future__ import annotations

import uuid

import uuid6
from django.conf import settings
from django.db import models


def time_ordered_id() -> uuid.UUID:
    """A UUID version 7: ids made one after another sort one after another (the events feed reads
    them in that order, and new rows go to the right-hand end of the index)."""
    return uuid.UUID(int=uuid6.uuid7().int)


class Endpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=time_ordered_id, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    event_types = models.JSONField(
        default=list, blank=True, help_text="The event types sent here; empty: every type."
    )
    description = models.CharField(max_length=255, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Kept in clear: an HMAC needs the secret itself. Shown to the client once, at creation or
    # rotation; never again through the API, nor in the admin.
    secret = models.CharField(max_length=100, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Health: the start of the current run of failed attempts, its length, and the circuit.
    failing_since = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    circuit_open_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "enabled"], name="webhook_endpoint_owner")]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class Event(models.Model):
    """Something that happened to a subject (a booking), written in the transaction that made
    it happen. `data` is the subject's public representation at that moment."""

    id = models.UUIDField(primary_key=True, default=time_ordered_id, editable=False)
    type = models.CharField(max_length=64)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="webhook_events",
    )
    subject_id = models.CharField(max_length=64)
    sequence = models.PositiveIntegerField(help_text="1, 2, 3... per subject, in order.")
    data = models.JSONField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subject_id", "sequence"], name="event_subject_seq")
        ]
        indexes = [models.Index(fields=["owner", "id"], name="event_owner_id")]

    def __str__(self) -> str:
        return f"{self.type} {self.subject_id} #{self.sequence}"


class Delivery(models.Model):
    """One event to one endpoint. The row is written with the event; a drain of its endpoint
    sends it. The same webhook-id (the event's id) goes with every attempt."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts made so far.")
    next_attempt_at = models.DateTimeField(help_text="When the next attempt is due.")
    # When a drain was last asked for, or took, this delivery (the sweeper wakes its endpoint
    # again if no outcome came); null: not asked for yet (a retry too far ahead for a countdown).
    # A drain's hold alone sets next_attempt_at after it (to the lease's end): that is how the
    # sweeper tells a drain that died from a wake that was lost (webhooks.services.sweep).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    redispatches = models.PositiveIntegerField(
        default=0, help_text="Times the sweeper sent the due attempt again, with no outcome."
    )
    last_response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            # A drain's claim: one endpoint's pending deliveries, by when they are due.
            models.Index(
                fields=["endpoint", "next_attempt_at"],
                name="delivery_endpoint_pending",
                condition=models.Q(status="pending"),
            ),
        ]
        permissions = [("redeliver_delivery", "Can redeliver webhook deliveries")]

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint} ({self.status})"


class Attempt(models.Model):
    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices)
    started_at = models.DateTimeField()
    duration_ms = models.FloatField(null=True, blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The first bytes of the answer.")
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.status}"


class Notice(models.Model):
    """Something the owner of an endpoint and the operators were told (also sent by e-mail), or
    an operator's action on deliveries, with who and why."""

    class Kind(models.TextChoices):
        ENDPOINT_DISABLED = "endpoint_disabled"
        REDELIVERED = "redelivered"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.SET_NULL, null=True, blank=True, related_name="notices"
    )
    actor = models.CharField(max_length=150, blank=True)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message[:60]}"
