"""The booking state machine: every transition from every state, every guard, the protected
field. Transitions are pure database changes, so these tests need no worker."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_fsm import InvalidResultState, TransitionNotAllowed

from bookings.models import Booking
from bookings.saga import STEP_NAMES, step_state

from ..factories import ResourceFactory, stay

pytestmark = pytest.mark.django_db

S = Booking.State
ALL_STATES = [s.value for s in S]


def held(**extra):
    """Fields of a booking whose every guard is satisfied."""
    return {
        "fraud_decision": "approved",
        "payment_status": "authorized",
        "authorization_ref": "auth_1",
        "room_status": "reserved",
        "reservation_ref": "res_1",
        "confirmation_sent_at": timezone.now(),
        "cancellation_reason": "customer_cancelled",
        **extra,
    }


def make(state: str, **fields) -> Booking:
    check_in, check_out = stay()
    return Booking.objects.create(
        resource=ResourceFactory(),
        check_in=check_in,
        check_out=check_out,
        guest_name="G",
        guest_email="g@example.com",
        payment_token="tok_visa",
        amount=100,
        currency="EUR",
        state=state,
        **fields,
    )


# (method, args, sources, target, fields that satisfy its guards)
TRANSITIONS = [
    ("start_saga", (), [S.PENDING], S.FRAUD_CHECK, {}),
    ("begin_preauthorization", (), [S.FRAUD_CHECK], S.PREAUTHORIZING, held()),
    ("begin_confirmation", (), [S.PREAUTHORIZING], S.CONFIRMING, held()),
    ("begin_notification", (), [S.CONFIRMING], S.NOTIFYING, held()),
    ("complete", (), [S.NOTIFYING], S.COMPLETED, held()),
    (
        "begin_compensation",
        ("payment_declined",),
        [
            S.FRAUD_CHECK,
            S.PREAUTHORIZING,
            S.CONFIRMING,
            S.NOTIFYING,
            S.COMPLETED,
            S.REQUIRES_ATTENTION,
        ],
        S.COMPENSATING,
        {},
    ),
    ("finish_cancellation", (), [S.COMPENSATING], S.CANCELLED, {}),
    (
        "require_attention",
        ("void failed",),
        [S.FRAUD_CHECK, S.PREAUTHORIZING, S.CONFIRMING, S.NOTIFYING, S.COMPENSATING],
        S.REQUIRES_ATTENTION,
        {},
    ),
    ("resume", (S.NOTIFYING,), [S.REQUIRES_ATTENTION], S.NOTIFYING, {}),
    ("resume_compensation", (), [S.REQUIRES_ATTENTION], S.COMPENSATING, held()),
    ("resolve_completed", (), [S.REQUIRES_ATTENTION], S.COMPLETED, {}),
    ("resolve_cancelled", (), [S.REQUIRES_ATTENTION], S.CANCELLED, {}),
]

CASES = [
    pytest.param(name, args, state, state in sources, target, fields, id=f"{name}-from-{state}")
    for name, args, sources, target, fields in TRANSITIONS
    for state in ALL_STATES
]


@pytest.mark.parametrize("name,args,state,allowed,target,fields", CASES)
def test_transition_from_every_state(name, args, state, allowed, target, fields):
    booking = make(state, **fields)
    before = booking.state_changed_at - timedelta(seconds=1)
    if allowed:
        getattr(booking, name)(*args)
        booking.save()
        fresh = Booking.objects.get(pk=booking.pk)
        assert fresh.state == target
        assert fresh.state_changed_at > before
    else:
        with pytest.raises(TransitionNotAllowed):
            getattr(booking, name)(*args)
        assert Booking.objects.get(pk=booking.pk).state == state
        assert booking.state == state


@pytest.mark.parametrize(
    "name,state,missing",
    [
        ("begin_preauthorization", S.FRAUD_CHECK, {"fraud_decision": ""}),
        ("begin_preauthorization", S.FRAUD_CHECK, {"fraud_decision": "rejected"}),
        ("begin_confirmation", S.PREAUTHORIZING, {"payment_status": "declined"}),
        ("begin_confirmation", S.PREAUTHORIZING, {"authorization_ref": ""}),
        ("begin_notification", S.CONFIRMING, {"room_status": "none"}),
        ("begin_notification", S.CONFIRMING, {"payment_status": "voided"}),
        ("complete", S.NOTIFYING, {"confirmation_sent_at": None}),
        (
            "finish_cancellation",
            S.COMPENSATING,
            {"payment_status": "authorized", "authorization_ref": "a"},
        ),
        (
            "finish_cancellation",
            S.COMPENSATING,
            {"room_status": "reserved", "reservation_ref": "r"},
        ),
        ("resume_compensation", S.REQUIRES_ATTENTION, {"cancellation_reason": ""}),
    ],
)
def test_each_guard_refuses_its_transition_and_changes_nothing(name, state, missing):
    fields = (
        held(**missing)
        if name != "finish_cancellation"
        else {"payment_status": "voided", "room_status": "released", **missing}
    )
    booking = make(state, **fields)
    with pytest.raises(TransitionNotAllowed):
        getattr(booking, name)()
    assert Booking.objects.get(pk=booking.pk).state == state


def test_state_cannot_be_assigned_directly():
    booking = make(S.PENDING)
    with pytest.raises(AttributeError):
        booking.state = S.COMPLETED
    assert Booking.objects.get(pk=booking.pk).state == S.PENDING


def test_resume_returns_to_the_state_the_saga_definition_gives_the_step():
    expected = {
        "fraud_check": S.FRAUD_CHECK,
        "preauthorize": S.PREAUTHORIZING,
        "confirm": S.CONFIRMING,
        "send_email": S.NOTIFYING,
    }
    assert tuple(expected) == STEP_NAMES
    for step, state in expected.items():
        booking = make(S.REQUIRES_ATTENTION)
        booking.resume(step_state(step))
        assert booking.state == state


def test_resume_refuses_a_state_that_is_not_a_step_of_the_saga():
    booking = make(S.REQUIRES_ATTENTION)
    with pytest.raises(InvalidResultState):
        booking.resume(S.COMPLETED)


def test_begin_compensation_keeps_known_reasons_and_maps_others_to_step_failed():
    a = make(S.CONFIRMING)
    a.begin_compensation("unavailable")
    assert a.cancellation_reason == "unavailable"
    b = make(S.CONFIRMING)
    b.begin_compensation("c_refused")
    assert b.cancellation_reason == "step_failed"


def test_a_stale_copy_cannot_overwrite_a_newer_state():
    from django_fsm import ConcurrentTransition

    booking = make(S.FRAUD_CHECK, **held())
    stale = Booking.objects.get(pk=booking.pk)
    booking.begin_preauthorization()
    booking.save()
    stale.begin_compensation("fraud_rejected")
    with pytest.raises(ConcurrentTransition), transaction.atomic():
        stale.save()
    assert Booking.objects.get(pk=booking.pk).state == S.PREAUTHORIZING
