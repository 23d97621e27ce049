"""The engine alone, on the real database, with a saga type that knows nothing of bookings.
Attempts are run in this process one after another (tests.helpers.drive)."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from sagas import engine, recovery
from sagas.errors import SagaStateError
from sagas.models import Saga, SagaEvent, SagaStep
from tests.faults.injection import messages_lost

from ..conftest import postgres_only
from ..helpers import drive, scheduled
from . import toy

pytestmark = pytest.mark.django_db


def start(**script: list[str]) -> Saga:
    toy.reset(**script)
    return engine.start(saga_type="toy", target_id="t-1", payload={"x": 1})


def steps(saga: Saga) -> list[tuple[str, str, int, str]]:
    return list(
        SagaStep.objects.filter(saga=saga)
        .order_by("id")
        .values_list("name", "direction", "attempt", "status")
    )


def effects() -> list[tuple[str, str]]:
    return [(name, direction) for name, direction, _, _ in toy.CALLS]


def test_happy_path_runs_every_action_once_in_order_and_completes():
    saga = start()
    drive(saga.pk)
    saga.refresh_from_db()
    assert saga.status == Saga.Status.COMPLETED
    assert effects() == [("a", "action"), ("b", "action"), ("c", "action"), ("notify", "action")]
    assert [s[3] for s in steps(saga)] == ["succeeded"] * 4
    assert toy.HOOKS[0] == ("started",) and toy.HOOKS[-1] == ("completed",)
    assert saga.results["c"] == {"done": "c.action", "call": 1}
    assert saga.finished_at is not None


def test_every_attempt_is_recorded_with_key_timings_and_request():
    saga = start()
    drive(saga.pk)
    for row in SagaStep.objects.filter(saga=saga):
        assert row.idempotency_key == f"{saga.pk}:{row.name}:{row.direction}"
        assert row.started_at and row.finished_at and row.finished_at >= row.started_at
        assert row.response


def test_transient_errors_retry_with_growing_delays_and_keep_the_key():
    saga = start(b__action=["transient", "transient", "ok"])
    drive(saga.pk)
    rows = list(SagaStep.objects.filter(saga=saga, name="b").order_by("attempt"))
    assert [(r.attempt, r.status) for r in rows] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "succeeded"),
    ]
    assert rows[0].error == "b.action flaked" and rows[0].error_code == "flaky"
    gaps = [(rows[i + 1].scheduled_for - rows[i].finished_at) for i in (0, 1)]
    assert timedelta(seconds=0.009) <= gaps[0] < gaps[1]
    assert {r.idempotency_key for r in rows} == {f"{saga.pk}:b:action"}
    saga.refresh_from_db()
    assert saga.status == Saga.Status.COMPLETED


def test_permanent_error_compensates_completed_steps_in_reverse_order_only():
    saga = start(notify__action=["ok"], c__action=["permanent"])
    drive(saga.pk)
    saga.refresh_from_db()
    assert saga.status == Saga.Status.COMPENSATED
    assert saga.reason == "c_refused"
    # c failed (nothing to undo), b has no compensation: only a is undone.
    assert effects() == [
        ("a", "action"),
        ("b", "action"),
        ("c", "action"),
        ("a", "compensation"),
    ]
    assert ("compensated", "c_refused") in toy.HOOKS


def test_compensations_run_in_reverse_order_when_a_completed_saga_is_turned_back():
    saga = start()
    drive(saga.pk)
    assert engine.turn_back(saga_id=saga.pk, reason="customer_cancelled") == "compensating"
    drive(saga.pk)
    comp = [c for c in effects() if c[1] == "compensation"]
    assert comp == [("c", "compensation"), ("a", "compensation")]
    saga.refresh_from_db()
    assert saga.status == Saga.Status.COMPENSATED and saga.reason == "customer_cancelled"


def test_exhausted_retries_start_compensation_with_step_failed():
    saga = start(c__action=["transient"])
    drive(saga.pk)
    saga.refresh_from_db()
    assert saga.status == Saga.Status.COMPENSATED
    assert saga.reason == "step_failed"
    assert [r[3] for r in steps(saga) if r[:2] == ("c", "action")] == [
        "retrying",
        "retrying",
        "failed",
    ]
    # A transient failure does not prove c did nothing (a timeout after the provider acted):
    # c is compensated too, latest first.
    assert [c for c in effects() if c[1] == "compensation"] == [
        ("c", "compensation"),
        ("a", "compensation"),
    ]


def test_a_deferred_attempt_runs_again_without_spending_a_retry():
    saga = start(b__action=["deferred"] * 5 + ["ok"])
    labels = drive(saga.pk)
    assert labels.count("b/action#1:deferred") == 5
    row = SagaStep.objects.get(saga=saga, name="b")
    assert (row.attempt, row.status) == (1, "succeeded")  # one row, one attempt
    saga.refresh_from_db()
    assert saga.status == Saga.Status.COMPLETED


def test_exhausted_timeouts_give_the_timeout_reason():
    saga = start(b__action=["timeout"])
    drive(saga.pk)
    saga.refresh_from_db()
    assert saga.reason == "timeout"


def test_exhausted_compensation_parks_the_saga_for_an_operator():
    saga = start(c__action=["permanent"], a__compensation=["transient"])
    drive(saga.pk)
    saga.refresh_from_db()
    assert saga.status == Saga.Status.REQUIRES_ATTENTION
    assert "compensation of a failed" in toy.HOOKS[-1][1]
    assert SagaEvent.objects.filter(saga=saga, kind="parked").exists()


def test_retriable_only_step_never_compensates_and_parks_when_exhausted():
    saga = start(notify__action=["transient"])
    drive(saga.pk)
    saga.refresh_from_db()
    assert saga.status == Saga.Status.REQUIRES_ATTENTION
    assert not [c for c in effects() if c[1] == "compensation"]
    assert saga.direction == Saga.Direction.FORWARD


def test_a_second_delivery_of_the_same_attempt_has_no_effect():
    saga = start()
    row = scheduled(saga.pk)
    assert engine.execute(row.pk) == "succeeded"
    assert engine.execute(row.pk) == "duplicate"
    assert effects() == [("a", "action")]
    assert SagaStep.objects.filter(saga=saga, name="b").count() == 1


def test_an_outcome_recorded_twice_counts_once():
    saga = start()
    row = scheduled(saga.pk)
    now = timezone.now()
    outcome = engine.Outcome({"done": 1}, None, now, now)
    assert engine.record(row.pk, saga.pk, outcome) == "succeeded"
    assert engine.record(row.pk, saga.pk, outcome) == "duplicate"
    assert SagaStep.objects.filter(saga=saga, status="scheduled").count() == 1


def test_cancel_in_flight_waits_for_the_step_boundary_then_undoes_it_too():
    saga = start()
    row = scheduled(saga.pk)
    started = timezone.now()  # a's provider call is under way when the cancel arrives
    assert engine.turn_back(saga_id=saga.pk, reason="customer_cancelled") == "requested"
    outcome = engine.Outcome({"done": "a"}, None, started, timezone.now())
    assert engine.record(row.pk, saga.pk, outcome) == "succeeded"  # a's effect is kept...
    drive(saga.pk)
    saga.refresh_from_db()
    assert saga.status == Saga.Status.COMPENSATED and saga.reason == "customer_cancelled"
    assert effects() == [("a", "compensation")]  # ...and undone; b never ran


def test_an_attempt_scheduled_before_a_cancel_still_runs_and_is_then_undone():
    # The attempt may already have reached its provider in a delivery whose worker died:
    # skipping it could leave that effect behind, so it runs (or replays) and is undone.
    saga = start()
    row = scheduled(saga.pk)
    engine.turn_back(saga_id=saga.pk, reason="customer_cancelled")
    assert engine.execute(row.pk) == "succeeded"
    drive(saga.pk)
    saga.refresh_from_db()
    assert saga.status == Saga.Status.COMPENSATED
    assert effects() == [("a", "action"), ("a", "compensation")]


def test_cancel_during_a_retry_wait_turns_back_after_the_retry():
    saga = start(b__action=["transient", "ok"])
    engine.execute(scheduled(saga.pk).pk)  # a ok
    engine.execute(scheduled(saga.pk).pk)  # b transient, retry scheduled
    engine.turn_back(saga_id=saga.pk, reason="customer_cancelled")
    drive(saga.pk)
    saga.refresh_from_db()
    assert saga.status == Saga.Status.COMPENSATED
    assert effects() == [("a", "action"), ("b", "action"), ("b", "action"), ("a", "compensation")]
    assert not SagaStep.objects.filter(saga=saga, name="c").exists()


def test_cancel_twice_or_after_the_end_is_refused():
    saga = start()
    engine.turn_back(saga_id=saga.pk, reason="customer_cancelled")
    with pytest.raises(SagaStateError, match="already"):
        engine.turn_back(saga_id=saga.pk, reason="customer_cancelled")
    drive(saga.pk)
    with pytest.raises(SagaStateError, match="cannot be undone"):
        engine.turn_back(saga_id=saga.pk, reason="customer_cancelled")


def test_operator_retry_of_a_parked_saga_gets_a_fresh_budget_and_is_audited():
    saga = start(notify__action=["transient", "transient", "transient", "ok"])
    drive(saga.pk)
    saga.refresh_from_db()
    assert saga.status == Saga.Status.REQUIRES_ATTENTION
    engine.retry(saga_id=saga.pk, actor="olga", reason="mail server fixed")
    drive(saga.pk)
    saga.refresh_from_db()
    assert saga.status == Saga.Status.COMPLETED
    last = SagaStep.objects.filter(saga=saga, name="notify").order_by("id").last()
    assert (last.round, last.attempt, last.status) == (2, 1, "succeeded")
    event = SagaEvent.objects.get(saga=saga, kind="retry")
    assert (event.actor, event.reason) == ("olga", "mail server fixed")


def test_operator_resolve_needs_a_parked_saga_and_a_reason():
    saga = start()
    with pytest.raises(SagaStateError, match="requires attention"):
        engine.resolve(saga_id=saga.pk, outcome="completed", actor="olga", reason="x")
    toy.SCRIPT["notify.action"] = ["transient"]
    drive(saga.pk)
    with pytest.raises(SagaStateError, match="reason"):
        engine.resolve(saga_id=saga.pk, outcome="completed", actor="olga", reason=" ")
    engine.resolve(saga_id=saga.pk, outcome="completed", actor="olga", reason="sent by hand")
    saga.refresh_from_db()
    assert saga.status == Saga.Status.COMPLETED
    assert SagaEvent.objects.get(saga=saga, kind="resolve").actor == "olga"


def test_the_sweeper_resends_an_attempt_whose_lease_ran_out():
    saga = start()
    row = scheduled(saga.pk)
    assert recovery.sweep().redispatched == []  # lease still running
    later = timezone.now() + timedelta(minutes=5)
    assert recovery.sweep(now=later).redispatched == [row.pk]
    row.refresh_from_db()
    assert row.dispatch_count == 2 and row.lease_expires_at > later
    assert recovery.sweep(now=later).redispatched == []  # the new lease holds


@override_settings(SAGA_MAX_DISPATCHES=3)
def test_an_attempt_that_never_reports_back_parks_the_saga():
    saga = start()
    when = timezone.now()
    for _ in range(3):
        when += timedelta(minutes=5)
        recovery.sweep(now=when)
    saga.refresh_from_db()
    assert saga.status == Saga.Status.REQUIRES_ATTENTION
    row = SagaStep.objects.get(saga=saga, name="a")
    assert (row.status, row.error_code) == ("failed", "no_outcome")
    assert toy.CALLS == []


def test_sweep_dry_run_changes_nothing():
    saga = start()
    later = timezone.now() + timedelta(minutes=5)
    report = recovery.sweep(now=later, dry_run=True)
    assert report.redispatched == [scheduled(saga.pk).pk]
    assert scheduled(saga.pk).dispatch_count == 1


def test_only_one_attempt_of_a_saga_can_be_scheduled():
    from django.db import IntegrityError

    saga = start()
    row = scheduled(saga.pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        SagaStep.objects.create(
            saga=saga,
            name="b",
            index=1,
            direction="action",
            idempotency_key="k",
            scheduled_for=row.scheduled_for,
            lease_expires_at=row.lease_expires_at,
        )


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_outcomes_for_one_attempt_have_one_winner():
    toy.reset()
    with messages_lost():
        saga = engine.start(saga_type="toy", target_id="t-2", payload={})
    row = scheduled(saga.pk)
    now = timezone.now()
    labels: list[str] = []
    barrier = threading.Barrier(6)

    def racer() -> None:
        barrier.wait()
        try:
            labels.append(engine.record(row.pk, saga.pk, engine.Outcome({}, None, now, now)))
        finally:
            connection.close()

    with messages_lost():
        threads = [threading.Thread(target=racer) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(labels) == ["duplicate"] * 5 + ["succeeded"]
    assert SagaStep.objects.filter(saga=saga, name="b").count() == 1


def test_unknown_saga_type_is_refused():
    with pytest.raises(LookupError):
        engine.start(saga_type="nope", target_id=str(uuid.uuid4()), payload={})


def test_step_settings_that_name_no_step_fail_the_system_checks(settings):
    from sagas.checks import check_step_settings

    settings.SAGA_STEP_SETTINGS = {
        "booking.preauthorize": {"max_attempts": 2},
        "booking.preauthorise": {"max_attempts": 2},
        "booking.fraud_check.compensation": {},
        "booking.confirm": {"max_atempts": 3},
    }
    messages = [e.msg for e in check_step_settings()]
    assert len(messages) == 3, messages
    assert "no saga 'booking' with a step 'preauthorise'" in messages[0]
    assert "has no compensation" in messages[1]
    assert "unknown fields ['max_atempts']" in messages[2]
