"""Operator actions through the admin: permission, reason, stale-state refusal and the two
audit records (the saga's SagaEvent and Django's LogEntry), per booking and in bulk."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from bookings import services
from sagas.models import SagaEvent

from ..helpers import reload

pytestmark = pytest.mark.django_db

ACTIONS = {
    # action: (fixture of a booking it applies to, state it leaves the booking in, event kind)
    "retry": ("email_parked", "notifying", "retry"),
    "resolve_completed": ("email_parked", "completed", "resolve"),
    "resolve_cancelled": ("void_parked", "cancelled", "resolve"),
}
PERMISSION = {
    "retry": "retry_booking",
    "resolve_completed": "resolve_booking",
    "resolve_cancelled": "resolve_booking",
    "compensate": "compensate_booking",
}


def operate_url(booking, action: str) -> str:
    return reverse("admin:bookings_booking_operate", args=[booking.pk, action])


def transition_url(booking, name: str = "begin_compensation") -> str:
    return reverse("admin:bookings_booking_transition", args=[booking.pk, name])


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_action_with_its_permission_runs_the_service_and_is_audited(action, request, make_operator):
    fixture, expected, kind = ACTIONS[action]
    booking = request.getfixturevalue(fixture)
    client = make_operator(PERMISSION[action])
    form = client.get(operate_url(booking, action))
    assert form.status_code == 200 and "What will happen" in form.content.decode()
    response = client.post(
        operate_url(booking, action),
        {"reason": "checked with the provider", "expected_state": booking.state},
        follow=True,
    )
    assert reload(booking).state == expected
    event = SagaEvent.objects.filter(saga_id=booking.saga_id, kind=kind).get()
    assert (event.actor, event.reason) == ("olga", "checked with the provider")
    entry = LogEntry.objects.get(object_id=str(booking.pk))
    assert entry.user.username == "olga"
    assert "by olga" in entry.change_message and "checked with the provider" in entry.change_message
    assert any(booking.reference in m for m in messages_of(response))


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_action_without_its_permission_is_forbidden_and_changes_nothing(
    action, request, make_operator
):
    fixture, _, _ = ACTIONS[action]
    booking = request.getfixturevalue(fixture)
    others = [p for a, p in PERMISSION.items() if p != PERMISSION[action]]
    client = make_operator(*others)
    assert client.get(operate_url(booking, action)).status_code == 403
    response = client.post(
        operate_url(booking, action), {"reason": "x", "expected_state": booking.state}
    )
    assert response.status_code == 403
    assert reload(booking).state == booking.state
    assert not SagaEvent.objects.filter(saga_id=booking.saga_id, actor="olga").exists()
    assert not LogEntry.objects.exists()


def test_compensate_button_goes_through_the_fsm_transition_form_and_the_service(
    make_operator, email_parked
):
    client = make_operator("compensate_booking")
    form = client.get(transition_url(email_parked)).content.decode()
    # The form lists what would be undone, in order, with keys and provider references.
    assert form.index("undo confirm") < form.index("undo preauthorize")
    assert f"{email_parked.saga_id}:preauthorize:compensation" in form
    assert email_parked.authorization_ref in form and email_parked.reservation_ref in form
    client.post(
        transition_url(email_parked),
        {"reason": "guest asked by phone", "expected_state": "requires_attention"},
    )
    booking = reload(email_parked)
    assert (booking.state, booking.cancellation_reason) == ("compensating", "operator_cancelled")
    event = SagaEvent.objects.get(saga_id=booking.saga_id, kind="cancel")
    assert (event.actor, event.reason) == ("olga", "guest asked by phone")
    assert "Compensate now by olga" in LogEntry.objects.get().change_message


def test_compensate_without_its_permission_is_forbidden(make_operator, completed):
    client = make_operator("retry_booking", "resolve_booking")
    response = client.post(
        transition_url(completed), {"reason": "no", "expected_state": "completed"}
    )
    assert response.status_code == 403
    assert reload(completed).state == "completed"


def test_the_bare_engine_transitions_cannot_be_fired_from_the_admin(operator, completed):
    response = operator.post(transition_url(completed, "require_attention"), {"reason": "x"})
    assert response.status_code == 404  # not a transition the console offers
    assert reload(completed).state == "completed"


@pytest.mark.parametrize("action", ["retry", "resolve_completed", "compensate"])
def test_a_reason_is_required(action, operator, email_parked):
    if action == "compensate":
        url = transition_url(email_parked)
    else:
        url = operate_url(email_parked, action)
    response = operator.post(url, {"reason": "   ", "expected_state": email_parked.state})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert reload(email_parked).state == "requires_attention"
    assert not SagaEvent.objects.filter(saga_id=email_parked.saga_id, actor="olga").exists()


def test_a_booking_that_moved_meanwhile_is_refused_with_a_clear_message(operator, email_parked):
    url = operate_url(email_parked, "resolve_cancelled")
    assert 'value="requires_attention"' in operator.get(url).content.decode()
    # Meanwhile another operator resolved it.
    services.booking_resolve(
        booking=email_parked, outcome="completed", actor="ben", reason="sent it by hand"
    )
    response = operator.post(
        url, {"reason": "cancel it", "expected_state": "requires_attention"}, follow=True
    )
    assert reload(email_parked).state == "completed"
    [message] = messages_of(response)
    assert "moved to completed meanwhile" in message and "nothing was done" in message
    assert SagaEvent.objects.filter(saga_id=email_parked.saga_id, kind="resolve").count() == 1
    assert not LogEntry.objects.exists()


def _bulk(client, action, bookings, **extra):
    data = {"action": action, "_selected_action": [str(b.pk) for b in bookings], **extra}
    return client.post(reverse("admin:bookings_booking_changelist"), data, follow=True)


def test_bulk_action_asks_for_confirmation_showing_how_many_and_what_happens(
    operator, email_parked, void_parked, completed
):
    response = _bulk(operator, "retry_selected", [email_parked, void_parked, completed])
    html = response.content.decode()
    assert "Retry step: 3 bookings" in html
    assert "applies to\n     <strong>2</strong>" in html
    assert "runs again with a fresh retry budget" in html
    assert 'name="expected_state_' in html
    # Nothing ran yet.
    assert not SagaEvent.objects.filter(kind="retry").exists()


def test_bulk_action_runs_on_each_and_refuses_those_that_moved(operator, email_parked, void_parked):
    data = {
        "post": "yes",
        "reason": "provider back up",
        f"expected_state_{email_parked.pk}": "requires_attention",
        # As if the confirmation page had shown it in another state.
        f"expected_state_{void_parked.pk}": "compensating",
    }
    response = _bulk(operator, "retry_selected", [email_parked, void_parked], **data)
    assert reload(email_parked).state == "notifying"
    assert reload(void_parked).state == "requires_attention"
    texts = messages_of(response)
    assert any("Retry step: 1 done, 1 refused." in m for m in texts)
    assert any("moved to requires_attention meanwhile" in m for m in texts)
    assert SagaEvent.objects.get(kind="retry").actor == "olga"
    assert LogEntry.objects.get().object_id == str(email_parked.pk)


def test_bulk_compensation_confirmation_lists_the_compensations(operator, completed):
    html = _bulk(operator, "compensate_selected", [completed]).content.decode()
    assert "undo send_email" in html and "undo confirm" in html and "undo preauthorize" in html


def test_bulk_action_needs_its_permission(make_operator, email_parked):
    client = make_operator("retry_booking")
    changelist = client.get(reverse("admin:bookings_booking_changelist")).content.decode()
    assert "retry_selected" in changelist and "resolve_completed_selected" not in changelist
    data = {"post": "yes", "reason": "x", f"expected_state_{email_parked.pk}": "requires_attention"}
    _bulk(client, "resolve_completed_selected", [email_parked], **data)
    assert reload(email_parked).state == "requires_attention"
