"""The saga engine, as the story of a step: start a saga; run an attempt's side effect; decide
what its outcome means (sagas/decision.py); apply the decision to the rows in memory; write
them (sagas/store.py); and, once written, send the next attempt. Then the operator's cancel,
retry and resolve, and the sweeper's recovery.

Rules every function here keeps:

- A side effect (a provider call) runs outside any transaction. Everything else (recording an
  outcome, moving the target's state through the hooks, scheduling the next attempt, the
  target's outbox rows) is written all or nothing, and only if nobody changed the saga, the
  attempt or the target since they were read; else the engine reads again and decides again.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Model
from django.utils import timezone

from . import decision as decisions
from . import instrument, store
from .decision import Decision
from .definition import (
    ACTION,
    SagaDefinition,
    Step,
    StepContext,
    get_definition,
)
from .dispatch import Dispatch
from .errors import SagaStateError, StepError, TransientError
from .models import Saga, SagaEvent, SagaStep

log = logging.getLogger(__name__)

LEASE_GRACE = timedelta(seconds=5)

Status = Saga.Status
StepStatus = SagaStep.Status

MAX_CHAIN = 20
MAX_CONFLICTS = 50  # reads and decisions again after concurrent writes, before giving up


@dataclass(frozen=True)
class Outcome:
    result: dict[str, Any]
    error: StepError | None
    started_at: datetime
    finished_at: datetime


# --- starting ------------------------------------------------------------------------------


def start(
    *,
    saga_type: str,
    target_id: str,
    payload: dict[str, Any],
    saga_id: Any = None,
    target: Any = None,
    dispatch: Dispatch | None = None,
    also: Callable[[list[Model]], Sequence[Model]] | None = None,
) -> Saga:
    """Create a saga and schedule its first step; the first message leaves after commit.

    `target`: the new object the saga drives (not saved yet): it is written with the saga,
    after its first transition. Without it, the hooks' lock_target finds it once the saga is
    written. `also`: a function of the rows announcing the start (the hooks' announce) that
    returns more new rows to write with them (such as the request's idempotency key). All of it
    is one write, all or nothing (one statement on PostgreSQL outside a transaction); a unique
    violation raises IntegrityError and writes nothing."""
    dispatch = dispatch or Dispatch()
    definition = get_definition(saga_type)
    first = definition.steps[0]
    fields: dict[str, Any] = {"saga_type": saga_type, "target_id": str(target_id)}
    if saga_id is not None:
        fields["id"] = saga_id
    saga = Saga(**fields, payload=payload, current_step=first.name)
    row = _attempt_row(saga, definition, first, ACTION, attempt=1, round_=1)
    writer = store.current()
    if target is not None:
        announced = _begin(saga, target, definition, row)
        more = also(announced) if also else ()
        writer.insert([saga, target, row, *more, *announced])
    else:
        with transaction.atomic():
            writer.insert([saga])
            target = definition.hooks.lock_target(saga)
            announced = _begin(saga, target, definition, row)
            more = also(announced) if also else ()
            if target is not None:
                definition.hooks.save_target(saga, target)
            writer.insert([row, *more, *announced])
    instrument.saga_started(saga)  # metrics + log line, after commit (sagas/instrument.py)
    transaction.on_commit(partial(definition.hooks.announced, announced))
    dispatch.after_commit(row, first, 0, target)
    return saga


def _begin(saga: Saga, target: Any, definition: SagaDefinition, first: SagaStep) -> list[Model]:
    definition.hooks.started(saga, target)
    return definition.hooks.announce(saga, target, "started", lambda: [first])


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


# --- executing -----------------------------------------------------------------------------


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
    label = _execute_one(store.current().read(step_id), task_id, worker, dispatch)
    hops = 0
    while dispatch.next and hops < MAX_CHAIN:
        row, target, history = dispatch.next.pop(0)
        _execute_one(row, task_id, worker, dispatch, target, history)
        hops += 1
    for row, _, _ in dispatch.next:  # a long chain goes back to the queue, behind the others
        dispatch.send(row.pk, get_definition(row.saga.saga_type).step(row.name).queue, 0)
    return label


def _execute_one(
    row: SagaStep | None,
    task_id: str,
    worker: str,
    dispatch: Dispatch,
    target: Any = None,
    history: list[SagaStep] | None = None,
) -> str:
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
    if target is None:
        target = definition.hooks.load_target(saga)  # read with the attempt (store.read)
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
        secrets=definition.hooks.secrets(target),
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
        history=history,
        dispatch=dispatch,
    )


# --- recording an outcome ------------------------------------------------------------------


def record(
    step_id: int,
    saga_id: Any,
    outcome: Outcome,
    *,
    task_id: str = "",
    worker: str = "",
    row: SagaStep | None = None,
    target: Any = None,
    history: list[SagaStep] | None = None,
    dispatch: Dispatch | None = None,
) -> str:
    """Record an attempt's outcome and move the saga on. Only the first outcome of an attempt
    counts; any later one returns "duplicate" and changes nothing.

    `row`: the attempt as read earlier, with its saga; `target`: the saga's target as last
    written by this process; `history`: the saga's attempts as this process wrote them (a
    chain's previous step), `row` among them. The decision is made on what was read and
    written only if none of it changed meanwhile (sagas/store.py); if something did, everything
    is read again and decided again."""
    dispatch = dispatch or Dispatch()
    writer = store.current()
    for _ in range(MAX_CONFLICTS):
        fresh = row is None
        if row is None:
            row, target, history = writer.read(step_id), None, None
            if row is None:
                return "missing"
        if row.status != StepStatus.SCHEDULED:
            return "duplicate"
        saga = row.saga
        definition = get_definition(saga.saga_type)
        if target is None:
            target = definition.hooks.load_target(saga)
        change = store.Change(
            saga, store.snapshot(saga), row, target, store.snapshot(target) if target else {}
        )
        timeline = _History(saga, row, history, definition)
        try:
            decided = decisions.decide(
                definition,
                _state(saga),
                _attempt(row),
                outcome.error,
                history=timeline.attempts,
                now=timezone.now(),
            )
            _record_attempt(row, decided, outcome, task_id, worker)
            change.new = _apply(saga, target, definition, decided, outcome.result, timeline)
        except Exception:
            if fresh:
                raise
            # The copies read earlier disagree with what is stored now (a transition refused):
            # read them again. Not hidden: on fresh rows the same error is raised.
            log.info("attempt %s: the rows read earlier are stale; reading them again", row.pk)
            row = target = None
            continue
        if writer.commit(change):
            _written(
                saga, target, definition, row, decided, outcome, change.new, timeline, dispatch
            )
            return decided.label
        log.info("attempt %s: the saga changed meanwhile; reading it again", row.pk)
        row = target = None
    raise SagaStateError(f"attempt {step_id}: the saga kept changing; its lease will bring it back")


class _History:
    """The saga's attempts as stored (read once, when a decision or an event needs them), and
    as they will be once the change being made is written.

    Known without a read: the attempts a chain's previous step left (`stored`, written by this
    process), and the saga's very first attempt, still scheduled, which is then its only one
    (a saga starts with it, and nothing adds an attempt before its outcome is recorded; if one
    were recorded meanwhile, the store refuses this change and the engine reads again)."""

    def __init__(
        self,
        saga: Saga,
        row: SagaStep | None,
        stored: list[SagaStep] | None = None,
        definition: SagaDefinition | None = None,
    ) -> None:
        self.saga, self.row = saga, row
        if stored is None and row is not None and definition is not None:
            first = definition.steps[0].name
            if (row.name, row.direction, row.round, row.attempt) == (first, ACTION, 1, 1):
                stored = [row]
        self.stored = stored
        self.new: list[SagaStep] = []

    def _rows(self) -> list[SagaStep]:
        if self.stored is None:
            self.stored = list(SagaStep.objects.filter(saga_id=self.saga.pk).order_by("pk"))
        return self.stored

    def attempts(self) -> list[decisions.Attempt]:
        return [_attempt(a) for a in self._rows()]

    def after(self) -> list[SagaStep]:
        if self.row is None:
            return [*self._rows(), *self.new]
        others = [a for a in self._rows() if a.pk != self.row.pk]
        return [*others, self.row, *self.new]


def _state(saga: Saga) -> decisions.SagaState:
    return decisions.SagaState(
        status=saga.status,
        direction=saga.direction,
        reason=saga.reason,
        last_error=saga.last_error,
        cancel_reason=saga.cancel_reason,
        cancel_requested=saga.cancel_requested_at is not None,
    )


def _attempt(row: SagaStep) -> decisions.Attempt:
    return decisions.Attempt(
        id=row.pk,
        name=row.name,
        direction=row.direction,
        attempt=row.attempt,
        round=row.round,
        status=row.status,
        outcome_unknown=row.outcome_unknown,
        created_at=row.created_at or timezone.now(),
    )


def _record_attempt(
    row: SagaStep, decided: Decision, outcome: Outcome, task_id: str, worker: str
) -> None:
    """The attempt's outcome, in memory."""
    row.started_at, row.finished_at = outcome.started_at, outcome.finished_at
    row.task_id, row.worker = task_id[:64], worker[:128]
    row.status = decided.attempt_status
    row.outcome_unknown = decided.outcome_unknown
    if outcome.error is None:
        row.response = outcome.result
    else:
        row.error, row.error_code, row.response = (
            decided.error,
            decided.error_code,
            outcome.error.data,
        )
    if decided.defer is not None:  # not tried: sent again later, with a lease from then
        step = get_definition(row.saga.saga_type).step(row.name)
        timeout = step.timeout_for(row.saga.saga_type, row.direction)
        row.scheduled_for = timezone.now() + timedelta(seconds=decided.defer)
        row.lease_expires_at = row.scheduled_for + timedelta(seconds=timeout) + LEASE_GRACE


def _apply(
    saga: Saga,
    target: Any,
    definition: SagaDefinition,
    decided: Decision,
    result: dict[str, Any],
    history: _History,
) -> list[Model]:
    """The decision's effect on the saga and its target, in memory, through the hooks; returns
    the new rows it makes: the next attempt, a parked event, the hooks' announcements."""
    state = decided.saga
    saga.status, saga.direction, saga.reason = state.status, state.direction, state.reason
    saga.last_error = state.last_error
    if decided.current_step is not None:
        saga.current_step = decided.current_step
    if decided.finished is not None:
        saga.finished_at = timezone.now() if decided.finished else None
    new: list[Model] = []
    following = decided.next
    if following is not None:
        step = definition.step(following.step)
        row = _attempt_row(
            saga,
            definition,
            step,
            following.direction,
            following.attempt,
            following.round,
            following.delay,
        )
        new.append(row)
        history.new.append(row)
    if decided.parked:
        new.append(SagaEvent(saga=saga, kind="parked", reason=decided.parked))
    hooks = definition.hooks
    for name, step_name, reason in decided.transitions:
        if name == "step_succeeded":
            saga.results = {**saga.results, step_name: result}
            hooks.step_succeeded(saga, target, definition.step(step_name), result)
        elif name == "compensation_succeeded":
            hooks.compensation_succeeded(saga, target, definition.step(step_name), result)
        elif name == "completed":
            hooks.completed(saga, target)
        elif name == "compensation_started":
            hooks.compensation_started(saga, target, reason)
        elif name == "compensated":
            hooks.compensated(saga, target, reason)
        elif name == "attention_required":
            hooks.attention_required(saga, target, reason)
        new += hooks.announce(saga, target, name, history.after)
    return new


def _written(
    saga: Saga,
    target: Any,
    definition: SagaDefinition,
    row: SagaStep,
    decided: Decision,
    outcome: Outcome,
    new: list[Model],
    timeline: _History,
    dispatch: Dispatch,
) -> None:
    """The change is written (or will be, with the caller's transaction): metrics, log lines,
    the hooks' announcements and the next message leave after commit."""
    instrument.attempt_recorded(saga, row, outcome, decided.label)
    _announce_end(saga, decided)
    transaction.on_commit(partial(definition.hooks.announced, new))
    if decided.defer is not None:
        dispatch.after_commit(row, definition.step(row.name), decided.defer, target)
    for attempt in timeline.new:
        step = definition.step(attempt.name)
        delay = decided.next.delay if decided.next else 0.0
        history = timeline.after() if timeline.stored is not None else None
        dispatch.after_commit(attempt, step, delay, target, history)


def _announce_end(saga: Saga, decided: Decision) -> None:
    """Metrics and log lines of a saga that finished or stopped, after commit."""
    ended = {name for name, _, _ in decided.transitions}
    if "completed" in ended:
        instrument.saga_completed(saga)
    elif "compensated" in ended:
        instrument.saga_compensated(saga, saga.reason)
    elif "attention_required" in ended:
        instrument.saga_parked(saga, decided.parked)


# --- cancel and operator actions ------------------------------------------------------------
# Rare and made by people: each takes the saga's lock (then the target's) in one transaction,
# so that it sees the latest rows and nothing changes under it.


def _locked(saga_id: Any) -> tuple[Saga, SagaDefinition, Any]:
    saga = Saga.objects.select_for_update().get(pk=saga_id)
    definition = get_definition(saga.saga_type)
    return saga, definition, definition.hooks.lock_target(saga)


def _audit(saga: Saga, kind: str, actor: str, reason: str, **data: Any) -> None:
    SagaEvent.objects.create(saga=saga, kind=kind, actor=actor, reason=reason, data=data)


def _save(saga: Saga, target: Any, definition: SagaDefinition, new: list[Model]) -> None:
    """Write what an operator action changed, under the locks it holds; the new attempts leave
    and the hooks' announcements go out after commit."""
    if target is not None:
        definition.hooks.save_target(saga, target)
    saga.save()
    store.OrmStore().insert(new)
    transaction.on_commit(partial(definition.hooks.announced, new))
    for row in new:
        if isinstance(row, SagaStep):
            Dispatch().after_commit(row, definition.step(row.name), 0, None)


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
        new: list[Model] = []
        if saga.status == Status.RUNNING:
            saga.cancel_requested_at = timezone.now()
            saga.cancel_reason = reason
            outcome = "requested"
        else:
            _skip_outstanding(saga, f"skipped: {reason}")
            history = _History(saga, None)
            decided = decisions.turn_back(definition, _state(saga), reason, history.attempts())
            new = _apply(saga, target, definition, decided, {}, history)
            _announce_end(saga, decided)
            outcome = "compensating"
        _audit(saga, "cancel", actor, note or reason, code=reason, outcome=outcome)
        _save(saga, target, definition, new)
    return outcome


def _skip_outstanding(saga: Saga, why: str) -> None:
    SagaStep.objects.filter(saga=saga, status=StepStatus.SCHEDULED).update(
        status=StepStatus.SKIPPED, error=why, finished_at=timezone.now()
    )


def retry(*, saga_id: Any, actor: str, reason: str) -> str:
    """Operator retry. A parked saga gets its failed step (or compensation) again with a fresh
    retry budget; a stalled attempt is sent again now."""
    with transaction.atomic():
        saga, definition, target = _locked(saga_id)
        new: list[Model] = []
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
            saga.current_step = step.name
            definition.hooks.resumed(saga, target, direction)
            new.append(_attempt_row(saga, definition, step, direction, 1, failed.round + 1))
            outcome = f"retrying {step.name} ({direction})"
        elif saga.status in Saga.ACTIVE:
            row = SagaStep.objects.filter(saga=saga, status=StepStatus.SCHEDULED).first()
            if row is None:
                raise SagaStateError("nothing to retry: no step is waiting")
            _send_again(saga, definition, row, timezone.now())
            outcome = f"sent {row.name} ({row.direction}) again"
        else:
            raise SagaStateError(f"the saga is {saga.get_status_display()}: nothing to retry")
        _audit(saga, "retry", actor, reason, outcome=outcome)
        _save(saga, target, definition, new)
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
        history = _History(saga, None)
        new = definition.hooks.announce(saga, target, "resolved", history.after)
        _audit(saga, "resolve", actor, reason, outcome=outcome)
        _save(saga, target, definition, new)


def pending_compensations(saga: Saga) -> list[Step]:
    """The compensations that would run if the saga turned back now, in the order they'd run
    (sagas.decision.pending_compensations on the saga's attempts as stored)."""
    definition = get_definition(saga.saga_type)
    return decisions.pending_compensations(definition, _History(saga, None).attempts())


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
        if row.dispatch_count < settings.SAGA_MAX_DISPATCHES:
            _send_again(saga, definition, row, now)
            saga.save()
            return "redispatched"
    # Sent as often as allowed, with no outcome: recorded as an attempt that gave no outcome
    # (whether its effect happened is unknown), like any other outcome.
    error = TransientError(
        f"no outcome after {row.dispatch_count} deliveries (worker lost or message lost)",
        code="no_outcome",
    )
    outcome = Outcome({}, error, row.started_at or now, now)
    label = record(step_id, saga_id, outcome, task_id=row.task_id, worker=row.worker)
    return "not stalled" if label == "duplicate" else "gave up"


def _send_again(saga: Saga, definition: SagaDefinition, row: SagaStep, now: datetime) -> None:
    """Send a scheduled attempt's message again now, with a new lease."""
    step = definition.step(row.name)
    timeout = step.timeout_for(saga.saga_type, row.direction)
    row.dispatch_count += 1
    row.lease_expires_at = now + timedelta(seconds=timeout) + LEASE_GRACE
    row.save(update_fields=["dispatch_count", "lease_expires_at"])
    Dispatch().after_commit(row, step, 0, None)
