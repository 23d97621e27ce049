"""The sandboxes' ledgers: one row per idempotency key, written in one statement on the common
path (first call with a key), read back on the rare one (a retry or a duplicate)."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import IntegrityError, connection, models, transaction

M = TypeVar("M", bound=models.Model)


def insert_once(model: type[M], **fields: Any) -> M | None:
    """Insert the row, or return None when a row with its idempotency key exists already (the
    unique constraint decides, so two concurrent first calls cannot both insert)."""
    try:
        manager = model._default_manager
        if connection.in_atomic_block:  # inside a caller's transaction: keep it usable
            with transaction.atomic():
                return manager.create(**fields)
        return manager.create(**fields)
    except IntegrityError:
        return None
