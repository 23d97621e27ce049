"""The saga engine: start, execute a step, record its outcome, compensate, cancel, and the
operator's retry / compensate / resolve.

Rules every function here keeps:

- A side effect (a provider call) runs outside any transaction. Everything else (recording an
  outcome, moving the target's state through the hooks, scheduling the next attempt) happens in
  one transaction with the saga row locked (SELECT ... FOR UPDATE on PostgreSQL; SQLite's
  IMMEDIATE transactions serialize writers).
- An attempt is a SagaStep row written *before* its message is sent; the message carries only the
  row's id and is sent after commit. A message lost between commit and broker leaves a scheduled
  row whose lease runs out; the sweeper sends it again.
- A saga has at most one scheduled attempt (a partial unique index says so). An outcome is
  recorded only while its row is still scheduled, so a second delivery of the same message, or
  a second copy racing the first, changes nothing: its provider call carried the same
  idempotency key, and its outcome is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Min, Model
from django.utils import timezone

from . import instrument, loading, optimistic
from .definition import (
    ACTION,
    COMPENSATION,
    RetryPolicy,
    SagaDefinition,
    Step,
    StepContext,
    get_definition,
    target_relations,
)
from .dispatch import Dispatch
from .errors import Deferral, PermanentError, SagaStateError, StepError, TransientError
from .models import Saga, SagaEvent, SagaStep

log = logging.getLogger(__name__)

LEASE_GRACE = timedelta(seconds=5)

Status = Saga.Status
StepStatus = SagaStep.Status

MAX_CHAIN = 20
SAGA_FIELDS = [
    "status",
    "direction",
    "current_step",
    "results",
    "reason",
    "last_error",
    "cancel_requested_at",
    "cancel_reason",
    "finished_at",
    "updated_at",
]


class _Duplicate(Exception):
    """The attempt already had its outcome recorded: roll back and change nothing."""


# --- starting ------------------------------------------------------------------------------


def start(
    *,
    saga_type: str,
    target_id: str,
    payload: dict[str, Any],
    saga_id: Any = None,
    target: Any = None,
    dispatch: Dispatch | None = None,
    also: Sequence[Model] = (),
) -> Saga:
    """Create a saga and schedule its first step, in the caller's transaction (so that the
    target and its saga are committed together), or, for a new target with no transaction open
    (PostgreSQL), in one statement (see _start_in_one_statement). The first message leaves
    after commit.
    `target`, when given, is the object the saga drives, not saved yet or already locked.
    `also`: new rows written together with the saga (all or nothing), such as the request's
    idempotency key; a unique violation among them raises IntegrityError and writes nothing."""
    dispatch = dispatch or Dispatch()
    definition = get_definition(saga_type)
    fields: dict[str, Any] = {"saga_type": saga_type, "target_id": str(target_id)}
    if saga_id is not None:
        fields["id"] = saga_id
    saga = Saga(**fields, payload=payload, current_step=definition.steps[0].name)
    if target is not None and target._state.adding and optimistic.available():
        return _start_in_one_statement(saga, definition, target, dispatch, also)
    with transaction.atomic(savepoint=False):
        saga.save(force_insert=True)
        if target is None:
            target = definition.hooks.lock_target(saga)
        definition.hooks.started(saga, target)
        definition.hooks.save_target(saga, target)
        _schedule(saga, definition, definition.steps[0], ACTION, dispatch, round_=1)
        for row in also:
            row.save(force_insert=True)
        instrument.saga_started(saga)  # metrics + log line, after commit (sagas/instrument.py)
    return saga


def _start_in_one_statement(
    saga: Saga, definition: SagaDefinition, target: Any, dispatch: Dispatch, also: Sequence[Model]
) -> Saga:
    """start() of a new target outside any transaction, on PostgreSQL: the saga, the target
    after its first transition and the first attempt are inserted by one statement in
    autocommit (sagas/optimistic.py), all or nothing, and the first message leaves after it."""
    first = definition.steps[0]
    definition.hooks.started(saga, target)
    row = _attempt_row(saga, definition, first, ACTION, attempt=1, round_=1)
    saga.version += 1  # as Saga.save does
    optimistic.insert_all([saga, target, row, *also])
    instrument.saga_started(saga)  # no transaction open: emitted now
    dispatch.written(row, first, target)
    return saga


def _schedule(
    saga: Saga,
    definition: SagaDefinition,
    step: Step,
    direction: str,
    dispatch: Dispatch,
    *,
    attempt: int = 1,
    round_: int | None = None,
    delay: float = 0.0,
) -> SagaStep:
    """Write the attempt row, then send its message after commit."""
    if round_ is None:
        round_ = _current_round(saga, step.name, direction)
    row = _attempt_row(saga, definition, step, direction, attempt, round_, delay)
    row.save(force_insert=True)
    saga.current_step = step.name
    dispatch.after_commit(row, step, delay)
    return row


def _attempt_row(
    saga: Saga,
    definition: SagaDefinition,
    step: Step,
    direction: str,
    attempt: int,
    round_: int,
    delay: float = 0.0,
) -> SagaStep:
    """A new attempt, not saved yet: its idempotency key, its request and its first lease."""
    eta = timezone.now() + timedelta(seconds=delay)
    timeout = step.timeout_for(saga.saga_type, direction)
    return SagaStep(
        saga=saga,
        name=step.name,
        index=definition.index(step.name),
        direction=direction,
        round=round_,
        attempt=attempt,
        idempotency_key=f"{saga.id}:{step.name}:{direction}",
        request=step.describe(saga.payload, direction) if step.describe else {},
        scheduled_for=eta,
        lease_expires_at=eta + timedelta(seconds=timeout) + LEASE_GRACE,
    )


def _current_round(saga: Saga, name: str, direction: str) -> int:
    latest = SagaStep.objects.filter(saga=saga, name=name, direction=direction).aggregate(
        Max("round")
    )["round__max"]
    return latest or 1


# --- executing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    result: dict[str, Any]
    error: StepError | None
    started_at: datetime
    finished_at: datetime


def execute(
    step_id: int,
    *,
    task_id: str = "",
    worker: str = "",
    chain_queues: frozenset[str] | None = None,
) -> str:
    """Run one attempt's side effect, then record its outcome. Safe to call any number of times
    for the same attempt: only the first outcome recorded counts. Returns what happened.

    With `chain_queues` (the queues the calling worker consumes), the attempts this one
    schedules to run at once on one of those queues are run next in this process, each after
    the previous outcome committed, instead of going through the broker: the same durability
    (every attempt is a row with a lease before it runs), one message per saga instead of one
    per step."""
    dispatch = Dispatch(chain_queues=chain_queues or frozenset())
    label = _execute_one(step_id, task_id, worker, dispatch)
    hops = 0
    while dispatch.next and hops < MAX_CHAIN:
        row, target = dispatch.next.pop(0)
        _execute_one(row, task_id, worker, dispatch, target)
        hops += 1
    for row, _ in dispatch.next:  # a long chain goes back to the queue, behind the others
        dispatch.send(row.pk, get_definition(row.saga.saga_type).step(row.name).queue, 0)
    return label


def _execute_one(
    attempt: int | SagaStep, task_id: str, worker: str, dispatch: Dispatch, target: Any = None
) -> str:
    row = (
        attempt
        if isinstance(attempt, SagaStep)
        else loading.attempt_with_saga(attempt, tuple(target_relations()))
    )
    if row is None:
        return "missing"
    if row.status != StepStatus.SCHEDULED:
        return "duplicate"
    saga = row.saga
    # A cancel requested meanwhile does not skip this attempt: an earlier delivery of it may
    # have reached the provider before its worker died, so it runs (replaying that effect under
    # the same key, or making it) and the saga turns back right after, undoing it.
    definition = get_definition(saga.saga_type)
    step = definition.step(row.name)
    instrument.bind_attempt(saga, row)  # every log line of this attempt names saga and step
    ctx = StepContext(
        saga_id=str(saga.id),
        saga_type=saga.saga_type,
        target_id=saga.target_id,
        step=row.name,
        direction=row.direction,
        attempt=row.attempt,
        idempotency_key=row.idempotency_key,
        payload=saga.payload,
        results=saga.results,
    )
    side_effect = step.action if row.direction == ACTION else step.compensation
    assert side_effect is not None, f"{row} has no side effect"
    for plugin in dispatch.plugins:
        plugin.before_action(ctx)
    started = timezone.now()
    result: dict[str, Any] = {}
    error: StepError | None = None
    try:
        result = side_effect(ctx) or {}
    except StepError as exc:
        error = exc
    except SoftTimeLimitExceeded:
        error = TransientError(f"{row.name} ran past its timeout", code="timeout")
    except Exception as exc:  # a bug in a step is recorded and retried, never lost
        log.exception("step %s raised an unexpected error", row)
        error = TransientError(f"{type(exc).__name__}: {exc}", code="unexpected_error")
    for plugin in dispatch.plugins:
        plugin.after_action(ctx)
    outcome = Outcome(result, error, started, timezone.now())
    return record(
        row.pk,
        saga.pk,
        outcome,
        task_id=task_id,
        worker=worker,
        row=row,
        target=target,
        dispatch=dispatch,
    )


def record(
    step_id: int,
    saga_id: Any,
    outcome: Outcome,
    *,
    task_id: str = "",
    worker: str = "",
    row: SagaStep | None = None,
    target: Any = None,
    dispatch: Dispatch | None = None,
) -> str:
    """Record an attempt's outcome and move the saga on, in one transaction. Only the first
    outcome of an attempt counts; any later one returns "duplicate" and changes nothing.
    `row` may be a copy of the attempt read earlier (with its saga): only its fixed fields are
    trusted, its status is checked again by the conditional update that records the outcome.
    `target`, with `row`, is the saga's target as last written by this process.

    The common case, an action that succeeded with no cancel pending, is written in one
    statement without locks when it can be (see `_record_optimistic`); anything else, or any
    conflict, takes the locked path below."""
    dispatch = dispatch or Dispatch()
    if row is not None and outcome.error is None:
        label = _record_optimistic(row, outcome, task_id, worker, target, dispatch)
        if label is not None:
            return label
        row = None  # the copy was changed in memory: read the attempt again
    try:
        with transaction.atomic():
            saga = Saga.objects.select_for_update().get(pk=saga_id)
            if row is None:
                row = SagaStep.objects.get(pk=step_id)
            if row.status != StepStatus.SCHEDULED:
                return "duplicate"
            definition = get_definition(saga.saga_type)
            target = definition.hooks.lock_target(saga)
            _stamp(row, outcome, task_id, worker)
            label = _apply_outcome(saga, target, definition, row, outcome, dispatch)
            instrument.attempt_recorded(saga, row, outcome, label)  # metrics + log, after commit
            definition.hooks.save_target(saga, target)
            saga.save(update_fields=SAGA_FIELDS)
    except _Duplicate:
        return "duplicate"
    return label


def _stamp(row: SagaStep, outcome: Outcome, task_id: str, worker: str) -> None:
    row.started_at, row.finished_at = outcome.started_at, outcome.finished_at
    row.task_id, row.worker = task_id[:64], worker[:128]


def _record_optimistic(
    row: SagaStep, outcome: Outcome, task_id: str, worker: str, target: Any, dispatch: Dispatch
) -> str | None:
    """Record a successful action in one statement, no lock taken: the attempt's outcome, the
    saga, the target's changed fields and the next attempt, written only if the attempt is still
    scheduled, the saga's version is the one read, and the target's changed fields still hold the
    values read (sagas/optimistic.py); else nothing is written and None says "take the locked
    path". Returns None at once where this path does not apply: inside a transaction, on a
    database without data-modifying CTEs, a cancel pending, a saga not running forward, a target
    the hooks cannot read without a lock."""
    saga = row.saga
    if not optimistic.available() or saga.status != Status.RUNNING or saga.cancel_requested_at:
        return None
    if row.direction != ACTION or row.status != StepStatus.SCHEDULED:
        return None
    definition = get_definition(saga.saga_type)
    if target is None:
        target = definition.hooks.load_target(saga)
        if target is None:
            return None
    saga_before = optimistic.snapshot(saga, SAGA_FIELDS)
    target_before = optimistic.snapshot(target)
    step = definition.step(row.name)
    row.status, row.response = StepStatus.SUCCEEDED, outcome.result
    _stamp(row, outcome, task_id, worker)
    try:
        following = _forward(saga, target, definition, step, outcome.result)
    except Exception:  # e.g. a transition refused: the copies read disagree. Not hidden: the
        # locked path runs the hooks again on rows read under lock, and raises if it persists.
        log.info("attempt %s: the copies read disagree; recording under the lock", row.pk)
        return None
    next_row = None
    if following is not None:
        next_row = _attempt_row(saga, definition, following, ACTION, attempt=1, round_=1)
        saga.current_step = following.name
    if not optimistic.write(
        saga=(saga, saga_before),
        outcome=(row, OUTCOME_FIELDS),
        target=(target, target_before),
        new_attempt=next_row,
    ):
        log.info("attempt %s: the saga changed meanwhile; recording under its lock", row.pk)
        return None
    label = "succeeded"
    instrument.attempt_recorded(saga, row, outcome, label)  # not in a transaction: at once
    if following is not None and next_row is not None:
        dispatch.written(next_row, following, target)
    else:
        instrument.saga_completed(saga)
    return label


OUTCOME_FIELDS = (
    "status",
    "started_at",
    "finished_at",
    "task_id",
    "worker",
    "response",
    "error",
    "error_code",
    "outcome_unknown",
)


def _save_outcome(row: SagaStep, *extra: str) -> None:
    """Write the attempt's outcome if it is still scheduled, else give up the transaction: a
    second copy of the attempt got there first."""
    fields = {name: getattr(row, name) for name in (*OUTCOME_FIELDS, *extra)}
    if not SagaStep.objects.filter(pk=row.pk, status=StepStatus.SCHEDULED).update(**fields):
        raise _Duplicate


def _apply_outcome(
    saga: Saga,
    target: Any,
    definition: SagaDefinition,
    row: SagaStep,
    outcome: Outcome,
    dispatch: Dispatch,
) -> str:
    step = definition.step(row.name)
    error = outcome.error
    if error is None:
        row.status = StepStatus.SUCCEEDED
        row.response = outcome.result
        _save_outcome(row)
        if row.direction == ACTION:
            _action_succeeded(saga, target, definition, step, outcome.result, dispatch)
        else:
            definition.hooks.compensation_succeeded(saga, target, step, outcome.result)
            _next_compensation(saga, target, definition, dispatch)
        return "succeeded"

    row.error, row.error_code, row.response = error.message, error.code[:64], error.data
    policy = step.policy(saga.saga_type, row.direction)
    retriable = isinstance(error, TransientError) and error.code != "no_outcome"
    if isinstance(error, Deferral):
        if error.code != "circuit_open" or not _waited_too_long(row, policy):
            _defer(saga, step, row, error.delay, dispatch)
            return "deferred"
        # The provider's circuit stayed open past the step's schedule and max_wait: give up as
        # if the retries had run out (an earlier attempt may have acted: compensated if so).
        error = TransientError(
            f"{error.message}; gave up after {policy.give_up_after():.0f}s",
            code="provider_unavailable",
        )
        row.error, row.error_code = error.message, error.code
        retriable = False
    if retriable and row.attempt < policy.max_attempts:
        row.status = StepStatus.RETRYING
        _save_outcome(row)
        _schedule(
            saga,
            definition,
            step,
            row.direction,
            dispatch,
            attempt=row.attempt + 1,
            round_=row.round,
            delay=policy.delay(row.attempt),
        )
        return "retrying"

    row.status = StepStatus.FAILED
    # A transient failure (timeout, lost worker) does not prove the provider did nothing.
    row.outcome_unknown = isinstance(error, TransientError)
    _save_outcome(row)
    saga.last_error = f"{row.name} ({row.direction}): {error.message}"
    if error.code == "no_outcome":
        # The attempt never reported back (its worker died each time it ran it): whether the
        # effect happened is unknown, so an operator decides.
        _park(saga, target, definition, f"{row.name} {row.direction} gave no outcome")
    elif row.direction == COMPENSATION:
        _park(saga, target, definition, f"compensation of {row.name} failed")
    elif step.retriable_only:
        _park(saga, target, definition, f"{row.name} failed after {row.attempt} attempts")
    else:
        _begin_compensation(saga, target, definition, _reason(error), dispatch)
    return "failed"


def _waited_too_long(row: SagaStep, policy: RetryPolicy) -> bool:
    """Whether the step (this round of it, in this direction) has been trying for longer than
    its retry schedule plus max_wait allow."""
    first = SagaStep.objects.filter(
        saga_id=row.saga_id, name=row.name, direction=row.direction, round=row.round
    ).aggregate(first=Min("created_at"))["first"]
    started = first or row.created_at
    return timezone.now() - started > timedelta(seconds=policy.give_up_after())


def _defer(saga: Saga, step: Step, row: SagaStep, delay: float, dispatch: Dispatch) -> None:
    """Keep the attempt scheduled and send it again after `delay`: it was not tried."""
    timeout = step.timeout_for(saga.saga_type, row.direction)
    row.scheduled_for = timezone.now() + timedelta(seconds=delay)
    row.lease_expires_at = row.scheduled_for + timedelta(seconds=timeout) + LEASE_GRACE
    _save_outcome(row, "scheduled_for", "lease_expires_at")
    dispatch.after_commit(row, step, delay)


def _reason(error: StepError) -> str:
    if isinstance(error, PermanentError):
        return error.code
    if error.code == "timeout":
        return "timeout"
    return "step_failed"


def _action_succeeded(
    saga: Saga,
    target: Any,
    definition: SagaDefinition,
    step: Step,
    result: dict[str, Any],
    dispatch: Dispatch,
) -> None:
    if saga.cancel_requested_at:
        _keep_result(saga, target, definition, step, result)
        _begin_compensation(saga, target, definition, saga.cancel_reason, dispatch)
        return
    following = _forward(saga, target, definition, step, result)
    if following is not None:
        _schedule(saga, definition, following, ACTION, dispatch, round_=1)
    else:
        instrument.saga_completed(saga)  # metrics + log line, after commit


def _keep_result(
    saga: Saga, target: Any, definition: SagaDefinition, step: Step, result: dict[str, Any]
) -> None:
    saga.results = {**saga.results, step.name: result}
    definition.hooks.step_succeeded(saga, target, step, result)


def _forward(
    saga: Saga, target: Any, definition: SagaDefinition, step: Step, result: dict[str, Any]
) -> Step | None:
    """An action succeeded and no cancel is pending: keep its result, move the target, and
    return the next step to schedule, or complete the saga (in memory) and return None."""
    _keep_result(saga, target, definition, step, result)
    position = definition.index(step.name)
    if position + 1 < len(definition.steps):
        return definition.steps[position + 1]
    saga.status = Status.COMPLETED
    saga.current_step = ""
    saga.finished_at = timezone.now()
    definition.hooks.completed(saga, target)
    return None


def _begin_compensation(
    saga: Saga, target: Any, definition: SagaDefinition, reason: str, dispatch: Dispatch
) -> None:
    saga.status = Status.COMPENSATING
    saga.direction = Saga.Direction.BACKWARD
    saga.reason = reason
    saga.finished_at = None
    definition.hooks.compensation_started(saga, target, reason)
    _next_compensation(saga, target, definition, dispatch)


def _next_compensation(
    saga: Saga, target: Any, definition: SagaDefinition, dispatch: Dispatch
) -> None:
    """Schedule the compensation of the latest completed step not yet undone, or finish."""
    pending = pending_compensations(saga)
    if pending:
        _schedule(saga, definition, pending[0], COMPENSATION, dispatch)
        return
    saga.status = Status.COMPENSATED
    saga.current_step = ""
    saga.finished_at = timezone.now()
    definition.hooks.compensated(saga, target, saga.reason)
    instrument.saga_compensated(saga, saga.reason)  # metrics + log line, after commit


def pending_compensations(saga: Saga) -> list[Step]:
    """The compensations that would run if the saga turned back now, in the order they'd run:
    every step whose action succeeded, or may have (its last attempt failed with an unknown
    outcome), and is not undone yet. Compensations must be harmless when nothing was done."""
    definition = get_definition(saga.saga_type)
    rows = SagaStep.objects.filter(saga=saga).values_list(
        "name", "direction", "status", "outcome_unknown"
    )
    done, maybe = set(), set()
    for name, direction, status, unknown in rows:
        if status == StepStatus.SUCCEEDED:
            done.add((name, direction))
        elif direction == ACTION and status == StepStatus.FAILED and unknown:
            maybe.add(name)
    return [
        step
        for step in reversed(definition.steps)
        if step.compensatable
        and ((step.name, ACTION) in done or step.name in maybe)
        and (step.name, COMPENSATION) not in done
    ]


def _park(saga: Saga, target: Any, definition: SagaDefinition, why: str) -> None:
    saga.status = Status.REQUIRES_ATTENTION
    saga.last_error = why if not saga.last_error else saga.last_error
    SagaEvent.objects.create(saga=saga, kind="parked", reason=why)
    definition.hooks.attention_required(saga, target, why)
    instrument.saga_parked(saga, why)  # metrics + log line, after commit


def _skip_outstanding(saga: Saga, why: str) -> None:
    SagaStep.objects.filter(saga=saga, status=StepStatus.SCHEDULED).update(
        status=StepStatus.SKIPPED, error=why, finished_at=timezone.now()
    )


# --- cancel and operator actions ------------------------------------------------------------


def _locked(saga_id: Any) -> tuple[Saga, SagaDefinition, Any]:
    saga = Saga.objects.select_for_update().get(pk=saga_id)
    definition = get_definition(saga.saga_type)
    return saga, definition, definition.hooks.lock_target(saga)


def _audit(saga: Saga, kind: str, actor: str, reason: str, **data: Any) -> None:
    SagaEvent.objects.create(saga=saga, kind=kind, actor=actor, reason=reason, data=data)


def cancellable(saga: Saga) -> bool:
    """Whether turning the saga back is allowed now."""
    if saga.status == Status.RUNNING:
        return saga.cancel_requested_at is None
    if saga.status == Status.COMPLETED:
        return True
    return saga.status == Status.REQUIRES_ATTENTION and saga.direction == Saga.Direction.FORWARD


def turn_back(*, saga_id: Any, reason: str, actor: str = "", note: str = "") -> str:
    """Undo the saga: at the next step boundary if a step is in flight ("requested"), at once if
    none is ("compensating"). `reason` is the code passed to the hooks (customer_cancelled,
    operator_cancelled...). Raises SagaStateError when the saga cannot be turned back."""
    with transaction.atomic():
        saga, definition, target = _locked(saga_id)
        if not cancellable(saga):
            if saga.cancel_requested_at and saga.status == Status.RUNNING:
                raise SagaStateError("a cancellation is already under way")
            raise SagaStateError(f"the saga is {saga.get_status_display()} and cannot be undone")
        if saga.status == Status.RUNNING:
            saga.cancel_requested_at = timezone.now()
            saga.cancel_reason = reason
            outcome = "requested"
        else:
            _skip_outstanding(saga, f"skipped: {reason}")
            _begin_compensation(saga, target, definition, reason, Dispatch())
            outcome = "compensating"
        _audit(saga, "cancel", actor, note or reason, code=reason, outcome=outcome)
        definition.hooks.save_target(saga, target)
        saga.save()
    return outcome


def retry(*, saga_id: Any, actor: str, reason: str) -> str:
    """Operator retry. A parked saga gets its failed step (or compensation) again with a fresh
    retry budget; a stalled attempt is sent again now."""
    with transaction.atomic():
        saga, definition, target = _locked(saga_id)
        if saga.status == Status.REQUIRES_ATTENTION:
            failed = (
                SagaStep.objects.filter(saga=saga, status=StepStatus.FAILED).order_by("-id").first()
            )
            if failed is None:
                raise SagaStateError("no failed step to retry")
            step = definition.step(failed.name)
            direction = failed.direction
            saga.status = Status.RUNNING if direction == ACTION else Status.COMPENSATING
            saga.last_error = ""
            definition.hooks.resumed(saga, target, direction)
            _schedule(
                saga, definition, step, direction, Dispatch(), attempt=1, round_=failed.round + 1
            )
            outcome = f"retrying {step.name} ({direction})"
        elif saga.status in Saga.ACTIVE:
            row = SagaStep.objects.filter(saga=saga, status=StepStatus.SCHEDULED).first()
            if row is None:
                raise SagaStateError("nothing to retry: no step is waiting")
            _redispatch_locked(saga, definition, row, timezone.now(), Dispatch(), force=True)
            outcome = f"sent {row.name} ({row.direction}) again"
        else:
            raise SagaStateError(f"the saga is {saga.get_status_display()}: nothing to retry")
        _audit(saga, "retry", actor, reason, outcome=outcome)
        definition.hooks.save_target(saga, target)
        saga.save()
    return outcome


def resolve(*, saga_id: Any, outcome: str, actor: str, reason: str) -> None:
    """Operator closes a parked saga by hand, as `completed` or `compensated`, after fixing what
    needed fixing outside the system."""
    if outcome not in (Status.COMPLETED, Status.COMPENSATED):
        raise SagaStateError("a saga can be resolved as completed or compensated only")
    if not reason.strip():
        raise SagaStateError("a reason is required")
    with transaction.atomic():
        saga, definition, target = _locked(saga_id)
        if saga.status != Status.REQUIRES_ATTENTION:
            raise SagaStateError(
                f"the saga is {saga.get_status_display()}; only a saga that requires attention "
                "can be resolved by hand"
            )
        saga.status = outcome
        saga.current_step = ""
        saga.finished_at = timezone.now()
        definition.hooks.resolved(saga, target, outcome, reason)
        _audit(saga, "resolve", actor, reason, outcome=outcome)
        definition.hooks.save_target(saga, target)
        saga.save()


# --- recovery ------------------------------------------------------------------------------


def redispatch_many(step_ids: list[int], *, now: datetime) -> tuple[list[int], list[int]]:
    """Send again, a few statements per kind of step, every stalled attempt still under its
    dispatch limit. Returns (sent, left): `left` are those at their limit, for `redispatch`
    one by one (they may fail and park their saga, which takes the saga's lock)."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    left = []
    for step_id, saga_type, name, direction, count in SagaStep.objects.filter(
        pk__in=step_ids
    ).values_list("id", "saga__saga_type", "name", "direction", "dispatch_count"):
        if count >= settings.SAGA_MAX_DISPATCHES:
            left.append(step_id)
        else:
            groups.setdefault((saga_type, name, direction), []).append(step_id)
    sent: list[int] = []
    dispatch = Dispatch()
    for (saga_type, name, direction), ids in groups.items():
        step = get_definition(saga_type).step(name)
        lease = now + timedelta(seconds=step.timeout_for(saga_type, direction)) + LEASE_GRACE
        with transaction.atomic():
            # Rows another sweeper holds, or that got an outcome meanwhile, are left alone.
            mine = list(
                SagaStep.objects.select_for_update(skip_locked=True)
                .filter(pk__in=ids, status=StepStatus.SCHEDULED, lease_expires_at__lt=now)
                .values_list("id", flat=True)
            )
            SagaStep.objects.filter(pk__in=mine).update(
                dispatch_count=F("dispatch_count") + 1, lease_expires_at=lease
            )
            transaction.on_commit(partial(_send_many, dispatch, mine, step.queue))
        sent += mine
    return sent, left


def _send_many(dispatch: Dispatch, step_ids: list[int], queue: str | None) -> None:
    for step_id in step_ids:
        dispatch.send(step_id, queue, 0)


def redispatch(step_id: int, *, now: datetime | None = None) -> str:
    """Send a stalled attempt's message again (its lease ran out with no outcome). After
    SAGA_MAX_DISPATCHES sends the attempt counts as failed with no outcome."""
    now = now or timezone.now()
    with transaction.atomic():
        saga_id = SagaStep.objects.filter(pk=step_id).values_list("saga_id", flat=True).first()
        if saga_id is None:
            return "missing"
        saga = Saga.objects.select_for_update().get(pk=saga_id)
        row = SagaStep.objects.get(pk=step_id)
        if row.status != StepStatus.SCHEDULED or row.lease_expires_at >= now:
            return "not stalled"
        definition = get_definition(saga.saga_type)
        label = _redispatch_locked(saga, definition, row, now, Dispatch(), force=False)
        saga.save()
    return label


def _redispatch_locked(
    saga: Saga,
    definition: SagaDefinition,
    row: SagaStep,
    now: datetime,
    dispatch: Dispatch,
    *,
    force: bool,
) -> str:
    step = definition.step(row.name)
    if not force and row.dispatch_count >= settings.SAGA_MAX_DISPATCHES:
        target = definition.hooks.lock_target(saga)
        error = TransientError(
            f"no outcome after {row.dispatch_count} deliveries (worker lost or message lost)",
            code="no_outcome",
        )
        row.finished_at = now
        _apply_outcome(saga, target, definition, row, Outcome({}, error, now, now), dispatch)
        definition.hooks.save_target(saga, target)
        return "gave up"
    timeout = step.timeout_for(saga.saga_type, row.direction)
    row.dispatch_count += 1
    row.lease_expires_at = now + timedelta(seconds=timeout) + LEASE_GRACE
    row.save(update_fields=["dispatch_count", "lease_expires_at"])
    dispatch.after_commit(row, step, 0)
    return "redispatched"
