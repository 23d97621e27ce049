"""What happens next: given a saga, one of its attempts and that attempt's outcome, the decision.

Pure: no database, no Celery, no clock (the caller gives `now`) and no randomness but the `rng`
the caller gives. The engine reads the rows, asks `decide`, applies the decision to the rows in
memory and hands them to a store (sagas/store.py) to write; every store writes the same
decision. What the engine may not know cheaply (the saga's other attempts) is asked for only
when a decision needs it, through `history`.

The rules, in the order `decide` applies them:

- An action succeeded: keep its result and schedule the next step, or complete the saga. If a
  cancel was asked for meanwhile, keep the result and turn back instead.
- A compensation succeeded: schedule the next compensation, or finish as compensated.
- A Deferral (rate limit, open circuit): the attempt was not tried. It stays scheduled and is
  sent again later, without spending a retry; past the step's give-up time (its retry schedule
  plus max_wait) one that waits for something down (Deferral.bounded: an open circuit) counts
  as a failure with no retry left.
- A TransientError with attempts left: a new attempt after the policy's backoff.
- Otherwise the attempt failed. A transient failure leaves its outcome unknown (the provider may
  have acted). An attempt that never reported back ("no_outcome"), a failed compensation, or a
  failed step after the pivot (retriable_only) parks the saga for an operator; any other failure
  turns the saga back: every step that succeeded, or may have, is compensated, latest first.
  A failed compensation that is only best effort (compensation_best_effort) stays failed, even
  with no outcome, and the undoing goes on with the earlier steps.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from .definition import ACTION, COMPENSATION, RetryPolicy, SagaDefinition, Step
from .errors import Deferral, PermanentError, StepError, TransientError

# The saga's and the attempts' statuses, as stored (sagas/models.py has the same strings).
RUNNING, COMPENSATING = "running", "compensating"
COMPLETED, COMPENSATED, REQUIRES_ATTENTION = "completed", "compensated", "requires_attention"
FORWARD, BACKWARD = "forward", "backward"
SCHEDULED, SUCCEEDED, RETRYING, FAILED = "scheduled", "succeeded", "retrying", "failed"


@dataclass(frozen=True)
class Attempt:
    """One attempt of one step, as a decision needs to know it."""

    id: int | None
    name: str
    direction: str
    attempt: int
    round: int
    status: str
    outcome_unknown: bool
    created_at: datetime


@dataclass(frozen=True)
class SagaState:
    status: str
    direction: str
    reason: str = ""
    last_error: str = ""
    cancel_reason: str = ""
    cancel_requested: bool = False


@dataclass(frozen=True)
class Next:
    """An attempt to write now and send after `delay` seconds."""

    step: str
    direction: str
    attempt: int
    round: int
    delay: float = 0.0


@dataclass(frozen=True)
class Decision:
    """What an outcome does.

    label: succeeded, retrying, deferred or failed (what `record` returns).
    attempt_status: the attempt's new status (scheduled when deferred: it was not tried).
    error, error_code: what the attempt records (an open circuit given up on is recorded as
    provider_unavailable).
    defer: seconds after which the deferred attempt is sent again.
    keep_result: the action's result goes into the saga's results under the step's name.
    saga: the saga's state after the decision.
    current_step: the step the saga is at after it ("" when it finished; None: unchanged).
    finished: True: the saga finished now; False: it is running again; None: unchanged.
    transitions: the hooks to call, in order: (name, step, reason), e.g. ("completed", "", "").
    next: the attempt to schedule, if any.
    parked: why an operator is needed ("" if not).
    """

    label: str
    attempt_status: str
    saga: SagaState
    error: str = ""
    error_code: str = ""
    outcome_unknown: bool = False
    defer: float | None = None
    keep_result: bool = False
    current_step: str | None = None
    finished: bool | None = None
    transitions: tuple[tuple[str, str, str], ...] = ()
    next: Next | None = None
    parked: str = ""


@dataclass
class _Draft:
    """A decision being made: the saga's fields and what follows, changed step by step."""

    saga: SagaState
    current_step: str | None = None
    finished: bool | None = None
    transitions: list[tuple[str, str, str]] = field(default_factory=list)
    next: Next | None = None
    parked: str = ""


History = Callable[[], Sequence[Attempt]]


def decide(
    definition: SagaDefinition,
    saga: SagaState,
    attempt: Attempt,
    error: StepError | None,
    *,
    history: History,
    now: datetime,
    rng: random.Random | None = None,
) -> Decision:
    """The decision for `attempt`'s outcome: `error` None is a success. `history` returns the
    saga's attempts as stored (this one included, still scheduled); it is called only when the
    decision depends on them (compensations, an open circuit's give-up time)."""
    step = definition.step(attempt.name)
    draft = _Draft(saga)
    if error is None:
        settled = replace(attempt, status=SUCCEEDED)
        if attempt.direction == ACTION:
            if saga.cancel_requested:
                draft.transitions.append(("step_succeeded", step.name, ""))
                _turn_back(draft, definition, saga.cancel_reason, _with(history, settled))
            else:
                _forward(draft, definition, step)
        else:
            draft.transitions.append(("compensation_succeeded", step.name, ""))
            _next_compensation(draft, definition, _with(history, settled))
        return _decision(draft, "succeeded", SUCCEEDED, keep_result=attempt.direction == ACTION)

    policy = step.policy(definition.name, attempt.direction)
    message, code = error.message, error.code
    retriable = isinstance(error, TransientError) and code != "no_outcome"
    if isinstance(error, Deferral):
        if not error.bounded or not _waited_too_long(attempt, history, policy, now):
            return _decision(draft, "deferred", SCHEDULED, message, code, defer=error.delay)
        message = f"{message}; gave up after {policy.give_up_after():.0f}s"
        code, retriable = "provider_unavailable", False
    if retriable and attempt.attempt < policy.max_attempts:
        draft.next = Next(
            step.name,
            attempt.direction,
            attempt.attempt + 1,
            attempt.round,
            policy.delay(attempt.attempt, rng),
        )
        draft.current_step = step.name
        return _decision(draft, "retrying", RETRYING, message, code)

    # A transient failure (timeout, lost worker) does not prove the provider did nothing.
    unknown = isinstance(error, TransientError)
    settled = replace(attempt, status=FAILED, outcome_unknown=unknown)
    draft.saga = replace(
        draft.saga, last_error=f"{attempt.name} ({attempt.direction}): {error.message}"
    )
    if attempt.direction == COMPENSATION and step.compensation_best_effort:
        # Sent or not (even with no outcome), the undoing goes on; the attempt stays failed.
        _next_compensation(draft, definition, _with(history, settled))
    elif code == "no_outcome":
        # The attempt never reported back (its worker died each time it ran it): whether the
        # effect happened is unknown, so an operator decides.
        _park(draft, f"{attempt.name} {attempt.direction} gave no outcome")
    elif attempt.direction == COMPENSATION:
        _park(draft, f"compensation of {attempt.name} failed")
    elif step.retriable_only:
        _park(draft, f"{attempt.name} failed after {attempt.attempt} attempts")
    else:
        _turn_back(draft, definition, _reason(error), _with(history, settled))
    return _decision(draft, "failed", FAILED, message, code, outcome_unknown=unknown)


def turn_back(
    definition: SagaDefinition, saga: SagaState, reason: str, history: Sequence[Attempt]
) -> Decision:
    """The decision to undo a saga now (a cancel of a saga with no step in flight): compensate
    every step that succeeded, or may have, latest first."""
    draft = _Draft(saga)
    _turn_back(draft, definition, reason, lambda: history)
    return _decision(draft, "compensating", "")


def pending_compensations(definition: SagaDefinition, history: Sequence[Attempt]) -> list[Step]:
    """The compensations that would run if the saga turned back now, in the order they'd run:
    every step whose action succeeded, or may have (its last attempt failed with an unknown
    outcome), and is not undone yet (or given up on, for a best-effort compensation).
    Compensations must be harmless when nothing was done."""
    done, maybe = set(), set()
    lenient = {step.name for step in definition.steps if step.compensation_best_effort}
    for a in history:
        if a.status == SUCCEEDED:
            done.add((a.name, a.direction))
        elif a.direction == ACTION and a.status == FAILED and a.outcome_unknown:
            maybe.add(a.name)
        elif a.direction == COMPENSATION and a.status == FAILED and a.name in lenient:
            done.add((a.name, COMPENSATION))  # given up on: not tried again
    return [
        step
        for step in reversed(definition.steps)
        if step.compensatable
        and ((step.name, ACTION) in done or step.name in maybe)
        and (step.name, COMPENSATION) not in done
    ]


# --- the parts of a decision ----------------------------------------------------------------


def _decision(
    draft: _Draft,
    label: str,
    attempt_status: str,
    error: str = "",
    code: str = "",
    *,
    defer: float | None = None,
    keep_result: bool = False,
    outcome_unknown: bool = False,
) -> Decision:
    return Decision(
        label=label,
        attempt_status=attempt_status,
        saga=draft.saga,
        error=error,
        error_code=code[:64],
        outcome_unknown=outcome_unknown,
        defer=defer,
        keep_result=keep_result,
        current_step=draft.current_step,
        finished=draft.finished,
        transitions=tuple(draft.transitions),
        next=draft.next,
        parked=draft.parked,
    )


def _with(history: History, settled: Attempt) -> History:
    """The history with `settled` in place of the attempt as stored."""

    def settled_history() -> list[Attempt]:
        others = [a for a in history() if a.id is None or a.id != settled.id]
        return [*others, settled]

    return settled_history


def _forward(draft: _Draft, definition: SagaDefinition, step: Step) -> None:
    draft.transitions.append(("step_succeeded", step.name, ""))
    position = definition.index(step.name)
    if position + 1 < len(definition.steps):
        following = definition.steps[position + 1]
        draft.next = Next(following.name, ACTION, 1, 1)
        draft.current_step = following.name
        return
    draft.saga = replace(draft.saga, status=COMPLETED)
    draft.current_step, draft.finished = "", True
    draft.transitions.append(("completed", "", ""))


def _turn_back(draft: _Draft, definition: SagaDefinition, reason: str, history: History) -> None:
    draft.saga = replace(draft.saga, status=COMPENSATING, direction=BACKWARD, reason=reason)
    draft.finished = False
    draft.transitions.append(("compensation_started", "", reason))
    _next_compensation(draft, definition, history)


def _next_compensation(draft: _Draft, definition: SagaDefinition, history: History) -> None:
    """Schedule the compensation of the latest completed step not yet undone, or finish."""
    past = history()
    pending = pending_compensations(definition, past)
    if pending:
        name = pending[0].name
        rounds = [a.round for a in past if a.name == name and a.direction == COMPENSATION]
        draft.next = Next(name, COMPENSATION, 1, max(rounds, default=1))
        draft.current_step = name
        return
    draft.saga = replace(draft.saga, status=COMPENSATED)
    draft.current_step, draft.finished = "", True
    draft.transitions.append(("compensated", "", draft.saga.reason))


def _park(draft: _Draft, why: str) -> None:
    draft.saga = replace(
        draft.saga, status=REQUIRES_ATTENTION, last_error=draft.saga.last_error or why
    )
    draft.parked = why
    draft.transitions.append(("attention_required", "", why))


def _waited_too_long(
    attempt: Attempt, history: History, policy: RetryPolicy, now: datetime
) -> bool:
    """Whether the step (this round of it, in this direction) has been trying for longer than
    its retry schedule plus max_wait allow."""
    same = [
        a.created_at
        for a in history()
        if (a.name, a.direction, a.round) == (attempt.name, attempt.direction, attempt.round)
    ]
    started = min(same, default=attempt.created_at)
    return now - started > timedelta(seconds=policy.give_up_after())


def _reason(error: StepError) -> str:
    if isinstance(error, PermanentError):
        return error.code
    if error.code == "timeout":
        return "timeout"
    return "step_failed"
