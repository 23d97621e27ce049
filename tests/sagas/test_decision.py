"""The pure decision core (sagas/decision.py): every rule, with no database and no Celery, then a
property-based run of whole sagas through random outcomes."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sagas import decision as d
from sagas.definition import ACTION, COMPENSATION, RetryPolicy, SagaDefinition, Step
from sagas.errors import Deferral, PermanentError, TransientError


def _noop(ctx):
    return {}


SAGA = SagaDefinition(
    name="decision_toy",
    steps=(
        Step("hold", action=_noop, compensation=_noop, retry=RetryPolicy(max_attempts=3)),
        Step("check", action=_noop, retry=RetryPolicy(max_attempts=2)),  # nothing to undo
        Step("reserve", action=_noop, compensation=_noop, retry=RetryPolicy(max_attempts=3)),
        Step("notify", action=_noop, compensation=_noop, retriable_only=True),
    ),
)
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
RUNNING = d.SagaState(status=d.RUNNING, direction=d.FORWARD)


def attempt(name: str, direction: str = ACTION, n: int = 1, round_: int = 1, **kw) -> d.Attempt:
    fields = {"id": hash((name, direction, n, round_)) % 10_000, "name": name,
              "direction": direction, "attempt": n, "round": round_, "status": d.SCHEDULED,
              "outcome_unknown": False, "created_at": NOW - timedelta(seconds=1)}  # fmt: skip
    return d.Attempt(**{**fields, **kw})


def done(name: str, direction: str = ACTION, **kw) -> d.Attempt:
    return attempt(name, direction, status=d.SUCCEEDED, **kw)


def decide(saga, current, error=None, history=(), **kw) -> d.Decision:
    past = [*history, current]
    return d.decide(SAGA, saga, current, error, history=lambda: past, now=NOW, **kw)


def no_history():
    raise AssertionError("this decision must not need the saga's other attempts")


# --- successes ------------------------------------------------------------------------------


def test_an_action_that_succeeded_schedules_the_next_step_without_reading_history():
    out = d.decide(SAGA, RUNNING, attempt("hold"), None, history=no_history, now=NOW)
    assert (out.label, out.attempt_status, out.keep_result) == ("succeeded", d.SUCCEEDED, True)
    assert out.next == d.Next("check", ACTION, 1, 1) and out.current_step == "check"
    assert out.transitions == (("step_succeeded", "hold", ""),)
    assert out.saga == RUNNING and out.finished is None


def test_the_last_action_completes_the_saga():
    out = d.decide(SAGA, RUNNING, attempt("notify"), None, history=no_history, now=NOW)
    assert out.saga.status == d.COMPLETED and out.finished is True and out.current_step == ""
    assert out.next is None
    assert out.transitions == (("step_succeeded", "notify", ""), ("completed", "", ""))


def test_a_cancel_asked_for_meanwhile_keeps_the_result_and_turns_back():
    saga = replace(RUNNING, cancel_requested=True, cancel_reason="customer_cancelled")
    out = decide(saga, attempt("reserve"), history=[done("hold"), done("check")])
    assert out.keep_result and out.saga.status == d.COMPENSATING
    assert (out.saga.direction, out.saga.reason) == (d.BACKWARD, "customer_cancelled")
    # The step just done is undone first, then the hold; "check" has nothing to undo.
    assert out.next == d.Next("reserve", COMPENSATION, 1, 1)
    assert out.transitions == (
        ("step_succeeded", "reserve", ""),
        ("compensation_started", "", "customer_cancelled"),
    )


def test_a_compensation_that_succeeded_schedules_the_next_one_then_finishes():
    back = d.SagaState(status=d.COMPENSATING, direction=d.BACKWARD, reason="payment_declined")
    history = [done("hold"), done("check"), done("reserve")]
    out = decide(back, attempt("reserve", COMPENSATION), history=history)
    assert out.next == d.Next("hold", COMPENSATION, 1, 1)
    assert out.transitions == (("compensation_succeeded", "reserve", ""),)
    history.append(done("reserve", COMPENSATION))
    out = decide(back, attempt("hold", COMPENSATION), history=history)
    assert out.next is None and out.saga.status == d.COMPENSATED and out.finished is True
    assert out.transitions[-1] == ("compensated", "", "payment_declined")
    assert not out.keep_result


# --- failures -------------------------------------------------------------------------------


def test_a_transient_failure_with_attempts_left_retries_after_the_policy_backoff():
    out = decide(RUNNING, attempt("hold", n=2), TransientError("slow", code="timeout"),
                 rng=random.Random(1))  # fmt: skip
    assert (out.label, out.attempt_status) == ("retrying", d.RETRYING)
    assert (out.error, out.error_code) == ("slow", "timeout")
    assert out.next is not None and replace(out.next, delay=0) == d.Next("hold", ACTION, 3, 1)
    assert 0 < out.next.delay <= RetryPolicy().max_delay and out.transitions == ()


def test_a_transient_failure_out_of_attempts_turns_back_and_undoes_the_step_too():
    out = decide(RUNNING, attempt("reserve", n=3), TransientError("down"),
                 history=[done("hold"), done("check")])  # fmt: skip
    assert (out.label, out.attempt_status, out.outcome_unknown) == ("failed", d.FAILED, True)
    assert out.saga.status == d.COMPENSATING and out.saga.reason == "step_failed"
    assert out.saga.last_error == "reserve (action): down"
    # The provider may have reserved before the failure was seen: the release runs first.
    assert out.next == d.Next("reserve", COMPENSATION, 1, 1)


def test_a_permanent_failure_is_not_retried_and_undoes_only_what_succeeded():
    out = decide(RUNNING, attempt("reserve"), PermanentError("full", code="unavailable"),
                 history=[done("hold"), done("check")])  # fmt: skip
    assert not out.outcome_unknown and out.saga.reason == "unavailable"
    assert out.next == d.Next("hold", COMPENSATION, 1, 1)


def test_a_timeout_out_of_attempts_turns_back_with_reason_timeout():
    out = decide(RUNNING, attempt("check", n=2), TransientError("late", code="timeout"),
                 history=[done("hold")])  # fmt: skip
    assert out.saga.reason == "timeout" and out.next == d.Next("hold", COMPENSATION, 1, 1)


def test_a_failure_with_nothing_to_undo_finishes_as_compensated_at_once():
    out = decide(RUNNING, attempt("hold"), PermanentError("no", code="fraud_rejected"))
    assert out.saga.status == d.COMPENSATED and out.next is None and out.finished is True
    assert [t[0] for t in out.transitions] == ["compensation_started", "compensated"]


@pytest.mark.parametrize(
    ("current", "error", "why"),
    [
        (attempt("hold"), TransientError("gone", code="no_outcome"), "hold action gave no outcome"),
        (attempt("hold", COMPENSATION, n=6), TransientError("x"), "compensation of hold failed"),
        (attempt("notify", n=5), TransientError("smtp"), "notify failed after 5 attempts"),
        (attempt("notify", n=1), PermanentError("bad", code="rejected"),
         "notify failed after 1 attempts"),
    ],
)  # fmt: skip
def test_what_automation_cannot_settle_parks_the_saga_for_an_operator(current, error, why):
    out = decide(RUNNING, current, error, history=[done("hold")])
    assert out.saga.status == d.REQUIRES_ATTENTION and out.parked == why
    assert out.transitions == (("attention_required", "", why),) and out.next is None
    assert out.saga.last_error.endswith(error.message)  # the error, not only the summary


# The same saga, but the reservation's undoing is only a courtesy (compensation_best_effort).
LENIENT = SagaDefinition(
    name="decision_toy_lenient",
    steps=tuple(
        replace(s, compensation_best_effort=True) if s.name == "reserve" else s for s in SAGA.steps
    ),
)


def test_a_best_effort_compensation_out_of_attempts_lets_the_undoing_go_on():
    back = d.SagaState(status=d.COMPENSATING, direction=d.BACKWARD, reason="customer_cancelled")
    past = [done("hold"), done("check"), done("reserve"), attempt("reserve", COMPENSATION, n=6)]
    out = d.decide(LENIENT, back, past[-1], TransientError("smtp down"), history=lambda: past,
                   now=NOW)  # fmt: skip
    assert (out.label, out.attempt_status) == ("failed", d.FAILED) and not out.parked
    assert out.saga.status == d.COMPENSATING and out.next == d.Next("hold", COMPENSATION, 1, 1)
    assert out.saga.last_error == "reserve (compensation): smtp down"  # visible, not hidden
    # Once the earlier steps are undone the saga ends compensated; the given-up one stays so.
    settled = [*past[:-1], replace(past[-1], status=d.FAILED, outcome_unknown=True)]
    assert [s.name for s in d.pending_compensations(LENIENT, settled)] == ["hold"]
    history = [*settled, attempt("hold", COMPENSATION)]
    out = d.decide(LENIENT, out.saga, history[-1], None, history=lambda: history, now=NOW)
    assert out.saga.status == d.COMPENSATED and out.next is None
    # Its worker died each time (no outcome): the undoing goes on all the same.
    lost = TransientError("lost", code="no_outcome")
    out = d.decide(LENIENT, back, past[-1], lost, history=lambda: past, now=NOW)
    assert out.next == d.Next("hold", COMPENSATION, 1, 1) and not out.parked
    # Without the flag the same failure waits for an operator.
    out = decide(back, past[-1], TransientError("smtp down"), history=past[:-1])
    assert out.saga.status == d.REQUIRES_ATTENTION and out.next is None


def test_a_deferral_keeps_the_attempt_scheduled_without_spending_a_retry():
    out = d.decide(SAGA, RUNNING, attempt("hold", n=3), Deferral("busy", delay=2.5,
                   code="rate_limited"), history=no_history, now=NOW)  # fmt: skip
    assert (out.label, out.attempt_status, out.defer) == ("deferred", d.SCHEDULED, 2.5)
    assert out.next is None and out.transitions == () and out.saga == RUNNING
    long_ago = attempt("hold", n=3, created_at=NOW - timedelta(days=1))
    unbounded = d.decide(SAGA, RUNNING, long_ago, Deferral("busy", delay=2.5, code="rate_limited"),
                         history=no_history, now=NOW)  # fmt: skip
    assert unbounded.label == "deferred"  # a limit that frees up by itself is waited for


def test_a_wait_for_something_down_defers_until_the_step_has_waited_past_its_give_up_time():
    error = Deferral("circuit open", delay=5, code="circuit_open", bounded=True)
    give_up = SAGA.step("hold").policy(SAGA.name, ACTION).give_up_after()
    recent = attempt("hold", created_at=NOW - timedelta(seconds=give_up - 1))
    assert decide(RUNNING, recent, error).label == "deferred"
    first = attempt("hold", n=1, created_at=NOW - timedelta(seconds=give_up + 1), id=1)
    later = attempt("hold", n=2, created_at=NOW - timedelta(seconds=5), id=2)
    out = decide(RUNNING, later, error, history=[replace(first, status=d.RETRYING)])
    assert (out.label, out.error_code) == ("failed", "provider_unavailable")
    assert "gave up after" in out.error and out.saga.status == d.COMPENSATED


def test_a_compensation_after_an_operator_retry_continues_its_round():
    back = d.SagaState(status=d.COMPENSATING, direction=d.BACKWARD, reason="timeout")
    history = [done("hold"), done("reserve"),
               attempt("reserve", COMPENSATION, n=6, status=d.FAILED, id=7),
               done("reserve", COMPENSATION, round_=2, id=8)]  # fmt: skip
    out = decide(back, attempt("reserve", COMPENSATION, round_=2, id=8), history=history[:-1])
    assert out.next == d.Next("hold", COMPENSATION, 1, 1)


def test_turn_back_of_a_completed_saga_undoes_every_step_latest_first():
    history = [done(s.name) for s in SAGA.steps]
    done_saga = d.SagaState(status=d.COMPLETED, direction=d.FORWARD)
    out = d.turn_back(SAGA, done_saga, "customer_cancelled", history)
    assert out.next == d.Next("notify", COMPENSATION, 1, 1)
    assert [s.name for s in d.pending_compensations(SAGA, history)] == ["notify", "reserve", "hold"]


# --- whole sagas, random outcomes -----------------------------------------------------------

OUTCOMES = st.sampled_from(["ok", "ok", "ok", "transient", "permanent", "no_outcome"])


@settings(max_examples=300, deadline=None)
@given(st.lists(OUTCOMES, min_size=0, max_size=60), st.booleans(), st.sampled_from([SAGA, LENIENT]))
def test_any_run_ends_and_undoes_exactly_what_may_have_been_done(outcomes, cancel, definition):
    """Run a saga on the decisions alone, its attempts' outcomes drawn at random (each attempt
    past the drawn list succeeds): it always ends, one attempt at a time, and when it ends
    compensated every step whose action succeeded or may have was undone, latest first (or,
    for a best-effort compensation, tried until its retries ran out)."""
    saga = RUNNING
    history: list[d.Attempt] = []
    current: d.Attempt | None = attempt("hold", id=0)
    draws = iter(outcomes)
    for n in range(200):
        if current is None:
            break
        if cancel and n == 1 and saga.status == d.RUNNING:
            saga = replace(saga, cancel_requested=True, cancel_reason="customer_cancelled")
        kind = next(draws, "ok")
        error = {
            "ok": None,
            "transient": TransientError("flaky"),
            "permanent": PermanentError("no", code="refused"),
            "no_outcome": TransientError("lost", code="no_outcome"),
        }[kind]
        past = [*history, current]
        out = d.decide(definition, saga, current, error, history=lambda p=past: p, now=NOW,
                       rng=random.Random(n))  # fmt: skip
        history.append(replace(current, status=out.attempt_status,
                               outcome_unknown=out.outcome_unknown))  # fmt: skip
        saga = out.saga
        nxt = out.next
        current = None if nxt is None else attempt(
            nxt.step, nxt.direction, nxt.attempt, nxt.round, id=n + 1
        )  # fmt: skip
    else:
        raise AssertionError("the saga never ended")
    assert saga.status in (d.COMPLETED, d.COMPENSATED, d.REQUIRES_ATTENTION)
    if saga.status == d.COMPENSATED:
        settled = [
            a
            for a in history
            if a.direction == COMPENSATION and a.status in (d.SUCCEEDED, d.FAILED)
        ]
        assert all(
            a.status == d.SUCCEEDED or definition.step(a.name).compensation_best_effort
            for a in settled
        )
        actions = [a for a in history if a.direction == ACTION]
        assert [a.name for a in settled] == [
            s.name for s in d.pending_compensations(definition, actions)
        ]
        assert not d.pending_compensations(definition, history)
    if saga.status == d.COMPLETED:
        assert [a.name for a in history if a.status == d.SUCCEEDED] == [
            s.name for s in definition.steps
        ]
