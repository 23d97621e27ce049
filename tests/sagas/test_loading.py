"""The worker's first read (sagas/loading.py): the attempt, its saga and the saga's booking in
one prepared SELECT, giving exactly what Django's select_related gives, on SQLite and
PostgreSQL alike (the column converters are the backend's own)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bookings.models import Booking
from sagas import engine
from sagas.loading import attempt_with_saga
from sagas.models import Saga, SagaStep
from tests.faults.injection import messages_lost

from ..helpers import book, scheduled

pytestmark = pytest.mark.django_db


def _values(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def _orm(pk: int) -> SagaStep:
    return SagaStep.objects.select_related("saga", "saga__booking").get(pk=pk)


@pytest.mark.parametrize("token", ["tok_visa", "tok_declined"])
def test_it_reads_what_select_related_reads_in_one_query(resource, token):
    with messages_lost():
        booking = book(resource, token=token)
    for _ in range(2):  # results, decimals, dates and JSON filled in
        engine.execute(scheduled(booking.saga_id).pk)
    for attempt in SagaStep.objects.filter(saga_id=booking.saga_id):
        expected = _orm(attempt.pk)
        with CaptureQueriesContext(connection) as q:
            got = attempt_with_saga(attempt.pk, ("booking",))
            saga, target = got.saga, got.saga.booking
            assert target.saga is saga  # both ways, as select_related sets them
        assert len(q.captured_queries) == 1
        assert _values(got) == _values(expected)
        assert _values(saga) == _values(expected.saga)
        assert _values(target) == _values(expected.saga.booking)
        assert not got._state.adding and not target._state.adding  # saved rows: updates work
    assert isinstance(target, Booking) and target.amount == booking.amount


def test_a_saga_without_a_booking_reads_as_select_related_does(db):
    saga = Saga.objects.create(saga_type="booking", target_id="none", payload={})
    attempt = SagaStep.objects.create(
        saga=saga,
        name="fraud_check",
        index=0,
        idempotency_key=f"{saga.pk}:x:action",
        scheduled_for=timezone.now(),
        lease_expires_at=timezone.now(),
    )
    with CaptureQueriesContext(connection) as q:
        got = attempt_with_saga(attempt.pk, ("booking",))
        with pytest.raises(Booking.DoesNotExist):
            got.saga.booking  # the access is the test
    assert len(q.captured_queries) == 1
    assert got.saga.pk == saga.pk and got.name == "fraud_check"


def test_an_unknown_attempt_is_none(db):
    assert attempt_with_saga(10**12, ("booking",)) is None
