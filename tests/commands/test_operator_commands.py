"""The on-call commands: output, dry run, JSON, and refusals, against bookings driven by the
real engine and sandboxes."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from bookings.models import Booking
from sagas import engine
from sagas.models import SagaEvent, SagaStep

from ..helpers import book, reload, scheduled

pytestmark = pytest.mark.django_db


def run(*args, **kwargs) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **kwargs)
    return out.getvalue()


# --- find_stuck_sagas ----------------------------------------------------------------------


def _run_next(booking) -> str:
    return engine.execute(scheduled(booking.saga_id).pk)


def test_find_stuck_sagas_explains_each_kind_of_stuck(room, void_parked, email_parked, completed):
    lost = book(room, email="lost@example.com")  # its message never reached a worker
    SagaStep.objects.filter(saga_id=lost.saga_id, status="scheduled").update(
        lease_expires_at=timezone.now() - timedelta(minutes=1)
    )
    flaky = book(room, token="tok_flaky", email="flaky@example.com")
    assert _run_next(flaky) == "succeeded"  # fraud check
    assert _run_next(flaky) == "retrying"  # first authorization attempt fails (transient)

    found = {s["reference"]: s for s in json.loads(run("find_stuck_sagas", json=True))}
    assert completed.reference not in found
    assert found[void_parked.reference]["reason"] == "compensation_failed"
    assert "compensation of preauthorize gave up" in found[void_parked.reference]["detail"]
    assert found[email_parked.reference]["reason"] == "waiting_for_operator"
    assert "send_email failed after 3 attempts" in found[email_parked.reference]["detail"]
    assert found[lost.reference]["reason"] == "message_lost"
    assert found[lost.reference]["step"] == "fraud_check"
    # Waiting for its retry, it moves on by itself: not stuck (the one definition of stuck,
    # which check_consistency uses too).
    assert flaky.reference not in found

    text = run("find_stuck_sagas")
    assert f"{void_parked.reference}  requires_attention" in text
    assert "why: compensation failed (compensation_failed)" in text
    fix = f"fix: when the provider is back: manage.py retry_booking {void_parked.reference}"
    assert fix in text
    assert "why: message lost (message_lost)" in text
    assert "3 stuck saga(s)" in text
    only = json.loads(run("find_stuck_sagas", json=True, reason="message_lost"))
    assert [s["reference"] for s in only] == [lost.reference]


def test_find_stuck_sagas_says_so_when_nothing_is_stuck(completed):
    assert run("find_stuck_sagas").strip() == "no stuck saga"
    assert json.loads(run("find_stuck_sagas", json=True)) == []


# --- retry_booking -------------------------------------------------------------------------


def test_retry_dry_run_says_what_would_run_and_changes_nothing(email_parked):
    text = run("retry_booking", email_parked.reference, dry_run=True)
    assert text.strip() == (
        f"{email_parked.reference} (requires_attention): would retry send_email (action)"
    )
    data = json.loads(run("retry_booking", email_parked.reference, dry_run=True, json=True))
    assert data["applies"] and data["step"] == "send_email (action)" and data["dry_run"]
    assert reload(email_parked).state == "requires_attention"
    assert not SagaEvent.objects.filter(kind="retry").exists()


def test_retry_runs_the_service_and_records_who_and_why(email_parked):
    data = json.loads(
        run("retry_booking", email_parked.reference, reason="relay fixed", actor="kim", json=True)
    )
    assert data["state"] == "notifying" and data["outcome"] == "retrying send_email (action)"
    event = SagaEvent.objects.get(kind="retry")
    assert (event.actor, event.reason) == ("kim", "relay fixed")


def test_retry_needs_a_reason_and_refuses_what_cannot_be_retried(email_parked, completed):
    with pytest.raises(CommandError, match="--reason is required"):
        run("retry_booking", email_parked.reference)
    with pytest.raises(CommandError, match=r"retry refused: .*nothing to retry"):
        run("retry_booking", completed.reference, reason="why not")
    with pytest.raises(CommandError, match="No booking BK-NOPE"):
        run("retry_booking", "BK-NOPE", reason="x")


# --- compensate_booking --------------------------------------------------------------------


def test_compensate_dry_run_lists_the_compensations_in_order_with_keys_and_references(
    completed,
):
    saga = completed.saga_id
    text = run("compensate_booking", completed.reference, dry_run=True)
    lines = text.splitlines()
    assert lines[0] == f"{completed.reference} (completed): would run, in this order:"
    assert lines[1].startswith(f"  1. undo send_email  key={saga}:send_email:compensation")
    assert lines[2] == (
        f"  2. undo confirm  key={saga}:confirm:compensation  "
        f"reservation_ref={completed.reservation_ref}"
    )
    assert lines[3] == (
        f"  3. undo preauthorize  key={saga}:preauthorize:compensation  "
        f"authorization_ref={completed.authorization_ref}"
    )
    data = json.loads(run("compensate_booking", completed.reference, dry_run=True, json=True))
    assert [c["step"] for c in data["compensations"]] == ["send_email", "confirm", "preauthorize"]
    assert reload(completed).state == "completed"


def test_compensate_starts_the_undo_through_the_service(completed):
    text = run("compensate_booking", completed.reference, reason="duplicate booking")
    assert "compensation compensating; now compensating" in text
    booking = reload(completed)
    assert (booking.state, booking.cancellation_reason) == ("compensating", "operator_cancelled")
    assert SagaEvent.objects.get(kind="cancel").reason == "duplicate booking"
    assert scheduled(booking.saga_id).name == "send_email"  # latest first


def test_compensate_refuses_a_saga_already_going_backwards(void_parked):
    with pytest.raises(CommandError, match="compensate refused"):
        run("compensate_booking", void_parked.reference, reason="again")


# --- resolve_booking -----------------------------------------------------------------------


def test_resolve_dry_run_then_for_real(void_parked):
    ref = void_parked.reference
    text = run("resolve_booking", ref, outcome="cancelled", dry_run=True)
    assert "would be marked cancelled (no provider call)" in text
    assert reload(void_parked).state == "requires_attention"
    data = json.loads(
        run("resolve_booking", ref, outcome="cancelled", reason="voided in portal", json=True)
    )
    assert data["state"] == "cancelled"
    event = SagaEvent.objects.get(kind="resolve")
    assert event.reason == "voided in portal" and event.actor.startswith("cli:")


def test_resolve_refuses_a_booking_that_does_not_require_attention(completed):
    text = run("resolve_booking", completed.reference, outcome="cancelled", dry_run=True)
    assert "cannot be resolved by hand" in text
    with pytest.raises(CommandError, match="resolve refused"):
        run("resolve_booking", completed.reference, outcome="cancelled", reason="x")
    assert reload(completed).state == Booking.State.COMPLETED


# --- graph_booking_states ------------------------------------------------------------------


def test_graph_writes_svg_with_every_state_and_counts(completed):
    svg = run("graph_booking_states", counts=True)
    assert svg.startswith("<svg")
    for state in Booking.State.values:
        assert f'data-state="{state}"' in svg
    assert '<text class="count"' in svg and ">1</text>" in svg  # the completed one


def test_graph_writes_dot_from_the_fsm_transitions(tmp_path, db):
    out = tmp_path / "states.dot"
    call_command("graph_booking_states", format="dot", output=str(out), stderr=StringIO())
    dot = out.read_text()
    assert dot.startswith("digraph booking_states")
    field = Booking._meta.get_field("state")
    for transition in field.get_all_transitions(Booking):
        assert transition.name in dot
    assert "requires_attention -> completed" in dot


# --- sweep_sagas -----------------------------------------------------------------------------


def test_sweep_dry_run_lists_stalled_steps_and_json_says_which(room):
    booking = book(room)
    row = scheduled(booking.saga_id)
    SagaStep.objects.filter(pk=row.pk).update(lease_expires_at=timezone.now() - timedelta(1))
    text = run("sweep_sagas", dry_run=True)
    assert f"would send again: 1 step(s) [{row.pk}]" in text
    assert f"saga {booking.saga_id} fraud_check (action) attempt 1, sent 1 time(s)" in text
    data = json.loads(run("sweep_sagas", json=True))
    assert data["redispatched"] == [row.pk] and data["steps"][0]["dispatch_count"] == 2
