"""Property-based test of the engine (hypothesis RuleBasedStateMachine): random interleavings of
step successes, transient and permanent failures, duplicate deliveries, crashes between a
provider call and its commit, sweeps, cancels and operator actions, on the real database. The
invariants are checked after every rule; a failure shrinks to a short, readable sequence."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from sagas import engine, recovery
from sagas.definition import RetryPolicy, SagaDefinition, Step, StepContext, register
from sagas.errors import PermanentError, SagaStateError, TransientError
from sagas.models import Saga, SagaStep

pytestmark = [pytest.mark.faults, pytest.mark.django_db]

# The outside world of the model saga: a ledger of effects keyed by idempotency key (a provider
# that honours keys), and the outcome the next call of each saga will have.
LEDGER: dict[str, dict[str, Any]] = {}
CALLS: Counter[str] = Counter()
NEXT: dict[str, str] = {}


def effect(ctx: StepContext) -> dict[str, Any]:
    """A provider that honours idempotency keys: a request that reaches it with a key it has
    seen returns the first result; a transient failure never reaches it."""
    CALLS[ctx.idempotency_key] += 1
    outcome = NEXT.pop(ctx.saga_id, "ok")
    if outcome == "transient":
        raise TransientError("flaky", code="flaky")
    if ctx.idempotency_key in LEDGER:
        return LEDGER[ctx.idempotency_key]
    if outcome == "permanent" and ctx.direction == "action":
        raise PermanentError("refused", code="refused")
    if ctx.direction == "compensation" and ctx.action_key() not in LEDGER:
        return {"effect": "nothing to undo"}  # compensating an action that never happened
    return LEDGER.setdefault(ctx.idempotency_key, {"effect": ctx.idempotency_key})


POLICY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05, jitter=0.0)
MODEL = register(
    SagaDefinition(
        name="model",
        steps=(
            Step(
                "reserve",
                action=effect,
                compensation=effect,
                retry=POLICY,
                compensation_retry=POLICY,
            ),
            Step("check", action=effect, retry=POLICY),
            Step(
                "charge",
                action=effect,
                compensation=effect,
                retry=POLICY,
                compensation_retry=POLICY,
            ),
            Step("notify", action=effect, retriable_only=True, retry=POLICY),
        ),
    )
)
COMPENSATABLE = {s.name for s in MODEL.steps if s.compensatable}


def scheduled(saga_id: Any) -> SagaStep | None:
    return SagaStep.objects.filter(saga_id=saga_id, status="scheduled").first()


class EngineMachine(RuleBasedStateMachine):
    sagas = Bundle("sagas")

    def __init__(self) -> None:
        super().__init__()
        LEDGER.clear()
        CALLS.clear()
        NEXT.clear()
        self.clock = timezone.now()

    def teardown(self) -> None:
        Saga.objects.filter(saga_type="model").delete()

    @rule(target=sagas)
    def start(self) -> str:
        saga = engine.start(saga_type="model", target_id="m", payload={})
        return str(saga.pk)

    @rule(saga=sagas, outcome=st.sampled_from(["ok", "ok", "transient", "permanent"]))
    def deliver(self, saga: str, outcome: str) -> None:
        row = scheduled(saga)
        if row is not None:
            NEXT[saga] = outcome
            engine.execute(row.pk)
            NEXT.pop(saga, None)

    @rule(saga=sagas)
    def deliver_again(self, saga: str) -> None:
        """A duplicate of a message whose attempt already has an outcome."""
        row = SagaStep.objects.filter(saga_id=saga).exclude(status="scheduled").last()
        if row is not None:
            before = dict(CALLS)
            assert engine.execute(row.pk) == "duplicate"
            assert dict(CALLS) == before, "a duplicate delivery called a provider"

    @rule(saga=sagas)
    def crash_after_provider_call(self, saga: str) -> None:
        """The worker dies between the provider call and the commit of its outcome."""
        row = scheduled(saga)
        if row is None:
            return
        s = Saga.objects.get(pk=saga)
        effect(
            StepContext(
                saga_id=saga,
                saga_type="model",
                target_id="m",
                step=row.name,
                direction=row.direction,
                attempt=row.attempt,
                idempotency_key=row.idempotency_key,
                payload={},
                results=s.results,
            )
        )

    @rule()
    def sweep(self) -> None:
        self.clock += timedelta(minutes=5)
        recovery.sweep(now=self.clock)

    @rule(saga=sagas)
    def cancel(self, saga: str) -> None:
        try:
            engine.turn_back(saga_id=saga, reason="customer_cancelled", actor="client")
        except SagaStateError:
            assert not engine.cancellable(Saga.objects.get(pk=saga))

    @rule(saga=sagas)
    def operator_retry(self, saga: str) -> None:
        try:
            engine.retry(saga_id=saga, actor="op", reason="retry")
        except SagaStateError:
            status = Saga.objects.get(pk=saga).status
            assert status in ("completed", "compensated") or scheduled(saga) is None

    @rule(saga=consumes(sagas), outcome=st.sampled_from(["completed", "compensated"]))
    def operator_resolve(self, saga: str, outcome: str) -> None:
        try:
            engine.resolve(saga_id=saga, outcome=outcome, actor="op", reason="fixed outside")
        except SagaStateError:
            assert Saga.objects.get(pk=saga).status != "requires_attention"

    @invariant()
    def invariants_hold(self) -> None:
        for saga in Saga.objects.filter(saga_type="model"):
            rows = list(SagaStep.objects.filter(saga=saga))
            live = [r for r in rows if r.status == "scheduled"]
            done = Counter((r.name, r.direction) for r in rows if r.status == "succeeded")
            # Never two outcomes for one step: no effect recorded twice.
            assert all(n == 1 for n in done.values()), done
            if saga.status in ("running", "compensating"):
                assert len(live) == 1, f"{saga} is active with {len(live)} scheduled attempts"
            else:
                assert not live, f"{saga} ended with an attempt still scheduled"
            if saga.status == "completed" and not saga.events.filter(kind="resolve").exists():
                assert {(s.name, "action") for s in MODEL.steps} <= set(done)
            if saga.status == "compensated" and not saga.events.filter(kind="resolve").exists():
                for name in COMPENSATABLE:
                    if (name, "action") in done:
                        assert (name, "compensation") in done, f"{saga}: {name} not undone"
            # Every recorded success of an action is an effect the provider holds, and every
            # effect the provider holds belongs to a recorded attempt (lost records = 0).
            keys = {r.idempotency_key for r in rows}
            for r in rows:
                if r.status == "succeeded" and r.direction == "action":
                    assert r.idempotency_key in LEDGER
            for key in LEDGER:
                if key.startswith(str(saga.pk)):
                    assert key in keys, f"effect {key} has no attempt"
            # Once the saga is over and was not closed by hand, nothing it did stays undone
            # unless an operator must look (orphan effects = 0).
            if saga.status == "compensated" and not saga.events.filter(kind="resolve").exists():
                for name in COMPENSATABLE:
                    if f"{saga.pk}:{name}:action" in LEDGER:
                        assert f"{saga.pk}:{name}:compensation" in LEDGER, f"{saga}: orphan {name}"


def test_engine_invariants_hold_under_random_interleavings():
    run_state_machine_as_test(
        EngineMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=35,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
