"""A saga type that knows nothing of bookings, to test the engine alone. Each step's outcomes
come from a script: a list of "ok", "transient", "permanent" or "timeout", one per call, the
last one repeating. Every call is recorded, so a test can see exactly which effects ran."""

from __future__ import annotations

from typing import Any

from sagas.definition import RetryPolicy, SagaDefinition, SagaHooks, Step, StepContext, register
from sagas.errors import Deferral, PermanentError, TransientError

SCRIPT: dict[str, list[str]] = {}
CALLS: list[tuple[str, str, int, str]] = []
HOOKS: list[tuple[str, ...]] = []


def _effect(ctx: StepContext) -> dict[str, Any]:
    key = f"{ctx.step}.{ctx.direction}"
    CALLS.append((ctx.step, ctx.direction, ctx.attempt, ctx.idempotency_key))
    script = SCRIPT.get(key, ["ok"])
    n = sum(1 for c in CALLS if f"{c[0]}.{c[1]}" == key)
    outcome = script[min(n, len(script)) - 1]
    if outcome == "transient":
        raise TransientError(f"{key} flaked", code="flaky")
    if outcome == "timeout":
        raise TransientError(f"{key} timed out", code="timeout")
    if outcome == "deferred":
        raise Deferral(f"{key} circuit open", delay=0.05)
    if outcome == "permanent":
        raise PermanentError(f"{key} refused", code=f"{ctx.step}_refused")
    return {"done": key, "call": n}


class RecordingHooks(SagaHooks):
    def started(self, saga, target):
        HOOKS.append(("started",))

    def step_succeeded(self, saga, target, step, result):
        HOOKS.append(("step_succeeded", step.name))

    def completed(self, saga, target):
        HOOKS.append(("completed",))

    def compensation_started(self, saga, target, reason):
        HOOKS.append(("compensation_started", reason))

    def compensation_succeeded(self, saga, target, step, result):
        HOOKS.append(("compensation_succeeded", step.name))

    def compensated(self, saga, target, reason):
        HOOKS.append(("compensated", reason))

    def attention_required(self, saga, target, reason):
        HOOKS.append(("attention_required", reason))

    def resumed(self, saga, target, direction):
        HOOKS.append(("resumed", direction))

    def resolved(self, saga, target, outcome, reason):
        HOOKS.append(("resolved", outcome))


FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, backoff=2.0, max_delay=0.1, jitter=0.0)

TOY = register(
    SagaDefinition(
        name="toy",
        steps=(
            Step("a", action=_effect, compensation=_effect, retry=FAST, compensation_retry=FAST),
            Step("b", action=_effect, retry=FAST),  # nothing to undo
            Step("c", action=_effect, compensation=_effect, retry=FAST, compensation_retry=FAST),
            Step("notify", action=_effect, retriable_only=True, retry=FAST),
        ),
        hooks=RecordingHooks(),
    )
)


def reset(**script: list[str]) -> None:
    SCRIPT.clear()
    SCRIPT.update({k.replace("__", "."): v for k, v in script.items()})
    CALLS.clear()
    HOOKS.clear()
