"""Saga state: one Saga row per run, one SagaStep row per attempt (action or compensation), one
SagaEvent row per thing a person or the sweeper did to it."""

import uuid
from typing import Any

import uuid6
from django.db import models
from django.db.models import Q


def time_ordered_id() -> uuid.UUID:
    """A new primary key: a UUID version 7 (RFC 9562), its first 48 bits the time in ms, the
    rest random (74 bits). Rows made one after another get ids that sort one after another, so
    each new row goes to the right-hand end of its primary-key index and of every index on a
    column that holds it (a saga's target_id, an attempt's saga_id), instead of to a random page
    of an index of millions of rows: a random key dirties a page in the middle of the index, and
    the first write of a page after each checkpoint logs the whole page."""
    return uuid.UUID(int=uuid6.uuid7().int)


class Saga(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        COMPENSATING = "compensating"
        COMPLETED = "completed"
        COMPENSATED = "compensated"
        REQUIRES_ATTENTION = "requires_attention"

    class Direction(models.TextChoices):
        FORWARD = "forward"
        BACKWARD = "backward"

    ACTIVE = (Status.RUNNING, Status.COMPENSATING)

    id = models.UUIDField(primary_key=True, default=time_ordered_id, editable=False)
    saga_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.RUNNING)
    direction = models.CharField(max_length=8, choices=Direction.choices, default=Direction.FORWARD)
    current_step = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    results = models.JSONField(default=dict, blank=True)
    reason = models.CharField(
        max_length=64, blank=True, help_text="Why the saga turned back or stopped."
    )
    last_error = models.TextField(blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Raised by every write of the row: the engine writes an outcome only if nobody "
        "wrote the saga since it was read.",
    )

    class Meta:
        indexes = [
            models.Index(fields=["status", "updated_at"], name="saga_status_updated"),
            # Index(), not db_index=True: that adds a LIKE-pattern index on PostgreSQL, which no
            # query uses and every new saga would maintain.
            models.Index(fields=["target_id"], name="saga_target"),
        ]

    def __str__(self) -> str:
        return f"{self.saga_type} {self.id} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.version += 1
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "version"}
        super().save(*args, **kwargs)


class SagaStep(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "scheduled"
        SUCCEEDED = "succeeded", "succeeded"
        RETRYING = "retrying", "failed, retry scheduled"
        FAILED = "failed", "failed"
        SKIPPED = "skipped", "skipped"

    class Direction(models.TextChoices):
        ACTION = "action"
        COMPENSATION = "compensation"

    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=64)
    index = models.PositiveSmallIntegerField()
    direction = models.CharField(max_length=12, choices=Direction.choices)
    round = models.PositiveSmallIntegerField(
        default=1, help_text="Raised by each operator retry, which grants a fresh retry budget."
    )
    attempt = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SCHEDULED)
    idempotency_key = models.CharField(max_length=200)
    request = models.JSONField(default=dict, blank=True)
    response = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    outcome_unknown = models.BooleanField(
        default=False,
        help_text="The attempt failed in a way that does not rule out its effect (a timeout, "
        "a lost worker): if the saga turns back, this step is compensated too.",
    )
    scheduled_for = models.DateTimeField()
    lease_expires_at = models.DateTimeField(
        help_text="Past this time without an outcome, the sweeper sends the message again."
    )
    dispatch_count = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["saga", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["saga", "name", "direction", "round", "attempt"],
                name="sagastep_one_row_per_attempt",
            ),
            # At most one attempt of a saga is ever in flight: two workers cannot both advance it.
            models.UniqueConstraint(
                fields=["saga"],
                condition=Q(status="scheduled"),
                name="sagastep_one_scheduled_per_saga",
            ),
        ]
        indexes = [
            # The sweeper's query: only scheduled rows are indexed, so it stays small and fast
            # however many finished attempts the table holds.
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="scheduled"),
                name="sagastep_scheduled_lease",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}/{self.direction} #{self.attempt} {self.status}"

    @property
    def duration_ms(self) -> float | None:
        if self.started_at and self.finished_at:
            # Rounded to the timestamps' microseconds: 3.103, not 3.1029999999999998.
            return round((self.finished_at - self.started_at).total_seconds() * 1000, 3)
        return None


class SagaEvent(models.Model):
    """Audit trail: cancels, operator actions, re-dispatches. Never updated, never deleted."""

    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32)
    actor = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["saga", "id"]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor or 'system'}"
