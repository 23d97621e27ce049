"""The saga DSL: pure Python, no database. A saga type is an ordered list of steps; each step has
an action, an optional compensation, a retry policy and a timeout. Hooks let the application
move its own objects (a booking's state) inside the engine's transactions."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings

ACTION = "action"
COMPENSATION = "compensation"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits initial_delay * backoff**(n-1), capped at
    max_delay, spread by +/- jitter (a fraction) so that failed steps do not retry in lockstep.

    max_wait: how long, on top of its retry schedule, a step may wait for a provider whose
    circuit is open (calls not made are deferred without spending a retry). Past it the step
    gives up as if its retries had run out, so it always reaches its end state."""

    max_attempts: int = 5
    initial_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.2
    max_wait: float = 120.0

    def delay(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt number `failed_attempt` (1-based) failed."""
        base = min(self.max_delay, self.initial_delay * self.backoff ** (failed_attempt - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.max_delay, base * (1 + spread)))

    def give_up_after(self) -> float:
        """Seconds from a step's first attempt after which waiting for a provider ends: the
        longest its retry schedule can take (every delay at its jittered maximum), plus
        max_wait."""
        delays = sum(
            min(self.max_delay, self.initial_delay * self.backoff ** (n - 1)) * (1 + self.jitter)
            for n in range(1, self.max_attempts)
        )
        return delays + self.max_wait


@dataclass(frozen=True)
class StepContext:
    """What a side effect may know: enough to call a provider, nothing to touch the saga with."""

    saga_id: str
    saga_type: str
    target_id: str
    step: str
    direction: str
    attempt: int
    idempotency_key: str
    payload: dict[str, Any]
    results: dict[str, Any]
    # Values the steps read from the target when they run (SagaHooks.secrets), never copied
    # into the saga's payload, an attempt's request, an error or a log line.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    def action_key(self) -> str:
        """The idempotency key the step's action used (a compensation looks its effect up)."""
        return f"{self.saga_id}:{self.step}:{ACTION}"


SideEffect = Callable[[StepContext], dict[str, Any] | None]


@dataclass(frozen=True)
class Step:
    """One step of a saga.

    retriable_only: the step comes after the pivot; its failure never undoes the saga, it is
    retried and, when the retries run out, the saga waits for an operator.
    compensation_best_effort: when its compensation's retries run out, the undoing goes on
    with the earlier steps instead of waiting for an operator; the failed attempt stays in the
    saga's history. For a courtesy (a cancellation notice) that must not keep a card held or a
    room taken while its own provider fails.
    describe(payload, direction): what the attempt sends, kept on its row for the timeline.
    label: how people read its name (admin, dashboard); from the name by default.
    meta: the application's own facts about the step (the state its target is in while it
    runs, what its outcome records...), so that the definition is their one place; the engine
    never reads them.
    """

    name: str
    action: SideEffect
    compensation: SideEffect | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    compensation_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=6))
    timeout: float = 30.0
    retriable_only: bool = False
    compensation_best_effort: bool = False
    queue: str | None = None
    describe: Callable[[dict[str, Any], str], dict[str, Any]] | None = None
    label: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name.replace("_", " ").capitalize())

    @property
    def compensatable(self) -> bool:
        return self.compensation is not None

    def policy(self, saga_type: str, direction: str) -> RetryPolicy:
        """The retry policy in force, with this deployment's SAGA_STEP_SETTINGS applied."""
        base = self.retry if direction == ACTION else self.compensation_retry
        overrides = _step_settings(saga_type, self.name, direction)
        fields = {k: v for k, v in overrides.items() if k in RetryPolicy.__dataclass_fields__}
        return replace(base, **fields) if fields else base

    def timeout_for(self, saga_type: str, direction: str) -> float:
        """Seconds after which a dispatched attempt without an outcome counts as stalled."""
        return float(_step_settings(saga_type, self.name, direction).get("timeout", self.timeout))


def _step_settings(saga_type: str, step: str, direction: str) -> dict[str, Any]:
    key = f"{saga_type}.{step}" if direction == ACTION else f"{saga_type}.{step}.{direction}"
    return dict(getattr(settings, "SAGA_STEP_SETTINGS", {}).get(key, {}))


class SagaHooks:
    """Called by the engine inside its transaction, with the saga row locked. Hooks change the
    database only (they move the target's state machine); they never call a provider."""

    def lock_target(self, saga: Any) -> Any:
        """Load and lock the object the saga drives; returned to every other hook."""
        return None

    # The target's reverse one-to-one name on Saga ("booking"), if it has one: the engine then
    # reads the target together with the attempt it runs (one query for both), with the
    # target's own relations named in `target_related` (what announce() represents).
    target_relation: str | None = None
    target_related: tuple[str, ...] = ()

    def load_target(self, saga: Any) -> Any:
        """Read the target without a lock (a Django model instance, or None if the saga has
        none): the engine writes the fields the hooks changed, if they still hold the values
        read (sagas/store.py)."""
        return None

    def secrets(self, target: Any) -> Mapping[str, str]:
        """Values of the target the steps need and the saga must not keep (StepContext.secrets):
        read with the attempt, handed to its side effect, stored nowhere else."""
        return {}

    def save_target(self, saga: Any, target: Any) -> None:
        """Write the target at the end of an operator's action, under its lock (the hooks change
        it in memory only)."""

    def started(self, saga: Any, target: Any) -> None:
        """The saga was created and its first step scheduled."""

    def step_succeeded(self, saga: Any, target: Any, step: Step, result: dict) -> None:
        """An action succeeded; `result` is what it returned."""

    def completed(self, saga: Any, target: Any) -> None:
        """Every action succeeded."""

    def compensation_started(self, saga: Any, target: Any, reason: str) -> None:
        """The saga turned back: `reason` is a code (a permanent error's code, step_failed,
        timeout, or the reason given with a cancel)."""

    def compensation_succeeded(self, saga: Any, target: Any, step: Step, result: dict) -> None:
        """One step's effect was undone."""

    def compensated(self, saga: Any, target: Any, reason: str) -> None:
        """Every completed step was undone."""

    def attention_required(self, saga: Any, target: Any, reason: str) -> None:
        """Automation gave up: an operator must act."""

    def resumed(self, saga: Any, target: Any, direction: str) -> None:
        """An operator retried a parked saga; it runs again in `direction`."""

    def resolved(self, saga: Any, target: Any, outcome: str, reason: str) -> None:
        """An operator closed the saga by hand as `completed` or `compensated`."""

    def announce(
        self, saga: Any, target: Any, transition: str, attempts: Callable[[], list[Any]]
    ) -> list[Any]:
        """New rows telling the world about `transition` (started, step_succeeded, completed,
        compensation_started, compensation_succeeded, compensated, attention_required,
        resolved), called after its hook: they are written with the transition, all or nothing
        (an outbox). `attempts()` gives the saga's attempts as they will be once written."""
        return []

    def announced(self, rows: list[Any]) -> None:
        """The rows `announce` returned (with the engine's own) are committed: send what they
        say (their messages), without waiting."""


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: tuple[Step, ...]
    hooks: SagaHooks = field(default_factory=SagaHooks)

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"saga {self.name}: step names must be unique")
        if not self.steps:
            raise ValueError(f"saga {self.name}: needs at least one step")

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"saga {self.name} has no step {name!r}")

    def index(self, name: str) -> int:
        return [s.name for s in self.steps].index(name)


_registry: dict[str, SagaDefinition] = {}


def register(definition: SagaDefinition) -> SagaDefinition:
    """Make a saga type known to the engine (call it from an AppConfig.ready)."""
    _registry[definition.name] = definition
    return definition


def target_relations() -> list[str]:
    """Every registered saga type's target relation on Saga, and the target's own relations
    (see SagaHooks.target_relation), as select_related() paths."""
    paths = set()
    for d in _registry.values():
        if d.hooks.target_relation:
            paths.add(d.hooks.target_relation)
            paths.update(f"{d.hooks.target_relation}__{r}" for r in d.hooks.target_related)
    return sorted(paths)


def get_definition(name: str) -> SagaDefinition:
    try:
        return _registry[name]
    except KeyError:
        raise LookupError(f"no saga type {name!r} is registered") from None
