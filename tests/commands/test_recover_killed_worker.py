"""A real stuck saga: a worker SIGKILLed between the provider call and the commit of its
outcome. The on-call commands find it, say why, and recover it with the effect once."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from sagas.models import SagaStep
from sandbox.models import PaymentAuthorization

from ..factories import ResourceFactory
from ..helpers import assert_invariants, book, reload, wait_for, wait_settled

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def run(*args, **kwargs) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


def test_worker_killed_mid_step_is_found_explained_and_recovered(start_worker):
    doomed = start_worker(
        "doomed", concurrency=1, faults={"pause_after_action": {"preauthorize.action": 60}}
    )
    booking = book(ResourceFactory(code="garden-room"))
    wait_for(
        lambda: PaymentAuthorization.objects.filter(status="authorized").exists(),
        timeout=30,
        what="the authorization",
    )
    doomed.kill()

    # Until its lease runs out the attempt may still report back: not stuck yet.
    assert booking.reference not in run("find_stuck_sagas")
    row = SagaStep.objects.get(saga_id=booking.saga_id, status="scheduled")

    def explained() -> list:
        return [
            s
            for s in json.loads(run("find_stuck_sagas", json=True))
            if s["reference"] == booking.reference and s["reason"] == "worker_lost"
        ]

    wait_for(lambda: bool(explained()), timeout=30, what="the lease to run out")
    [stuck] = explained()
    assert stuck["step"] == "preauthorize" and stuck["booking_state"] == "preauthorizing"
    assert "the provider saw the call, so its worker died mid-step" in stuck["detail"]
    assert "sweep_sagas" in stuck["fix"]

    dry = json.loads(run("sweep_sagas", dry_run=True, json=True))
    assert dry["redispatched"] == [row.pk]
    assert SagaStep.objects.get(pk=row.pk).dispatch_count == 1  # the dry run sent nothing

    start_worker("rescuer")
    assert f"sent again: 1 step(s) [{row.pk}]" in run("sweep_sagas")
    [booking] = wait_settled([booking], timeout=60)
    assert booking.state == "completed"
    assert PaymentAuthorization.objects.get().attempts == 1  # replayed, not repeated
    assert run("find_stuck_sagas").strip() == "no stuck saga"
    assert reload(booking).state == "completed"
    assert_invariants([booking])
