"""The sandbox's ledger moved apps without losing a row: a database migrated before the move,
with an authorization in it, migrates forward and the sandbox app reads the same row."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from sandbox.models import PaymentAuthorization

BEFORE = [("providers", "0002_unique_constraints"), ("sandbox", None)]


@pytest.mark.django_db(transaction=True)
def test_moving_the_gateway_ledger_to_the_sandbox_app_keeps_its_rows():
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    try:
        old = MigrationExecutor(connection).loader.project_state(BEFORE[:1]).apps
        Old = old.get_model("providers", "PaymentAuthorization")
        Old.objects.create(
            idempotency_key="before-the-move",
            reference="auth_old",
            token="tok_visa",
            amount="120.00",
            currency="EUR",
            status="authorized",
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(leaves)
    moved = PaymentAuthorization.objects.get(idempotency_key="before-the-move")
    assert (moved.reference, moved.status, str(moved.amount)) == (
        "auth_old",
        "authorized",
        "120.00",
    )
    assert PaymentAuthorization._meta.db_table == "providers_paymentauthorization"
