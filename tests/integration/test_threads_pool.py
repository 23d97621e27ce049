"""A worker under Celery's threads pool (which the Procfile's WORKER_POOL allows) chains each
saga's steps in the task that ran its first one: every thread has its own Dispatch, so no
thread runs another thread's next step (with one module-global chain, a thread appended its
saga's next step to whichever chain another thread had open)."""

from collections import defaultdict

import pytest

from sagas.models import SagaStep

from ..factories import ResourceFactory
from ..helpers import assert_invariants, book, wait_settled

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_each_saga_runs_its_steps_in_its_own_chain_under_the_threads_pool(start_worker):
    start_worker("threads", pool="threads", concurrency=6)
    room = ResourceFactory(code="garden-room", capacity=100)
    bookings = [book(room, email=f"t{i}@example.com") for i in range(40)]
    settled = wait_settled(bookings, timeout=120)
    assert {b.state for b in settled} == {"completed"}
    tasks = defaultdict(set)
    for saga_id, task_id in SagaStep.objects.filter(
        saga_id__in=[b.saga_id for b in bookings]
    ).values_list("saga_id", "task_id"):
        tasks[saga_id].add(task_id)
    # One message per saga: its four steps ran in the task that took its first message.
    assert all(len(ids) == 1 for ids in tasks.values()), {
        k: v for k, v in tasks.items() if len(v) > 1
    }
    assert len({next(iter(ids)) for ids in tasks.values()}) == 40
    assert_invariants(bookings)
