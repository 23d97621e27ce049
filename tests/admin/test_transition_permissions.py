"""The transition and operate pages ask for the booking's view permission and the action's own
(issue 15, item 3): a staff user without them sees neither the booking nor its compensation
plan, and a name the console does not offer is a 404, never a 500."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from sagas.models import SagaEvent

from ..factories import UserFactory
from ..helpers import reload

pytestmark = pytest.mark.django_db


def staff(*codenames: str, username: str = "sam") -> Client:
    """A logged-in staff user holding exactly these bookings permissions (none: just staff)."""
    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="bookings", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def transition_url(booking, name: str = "begin_compensation") -> str:
    return reverse("admin:bookings_booking_transition", args=[booking.pk, name])


def operate_url(booking, action: str) -> str:
    return reverse("admin:bookings_booking_operate", args=[booking.pk, action])


def shows_the_plan(response, booking) -> bool:
    html = response.content.decode()
    return booking.authorization_ref in html or f"{booking.saga_id}:preauthorize" in html


@pytest.mark.parametrize(
    "codenames",
    [
        (),  # staff, nothing else
        ("view_booking",),  # may look, may not compensate
        ("compensate_booking",),  # may compensate, may not see bookings
    ],
    ids=["no-permission", "view-only", "compensate-only"],
)
def test_the_compensation_page_needs_view_and_compensate_permissions(codenames, email_parked):
    client = staff(*codenames)
    for url in (transition_url(email_parked), operate_url(email_parked, "compensate")):
        response = client.get(url)
        assert response.status_code == 403, (url, response.status_code)
        assert not shows_the_plan(response, email_parked)
        posted = client.post(url, {"reason": "x", "expected_state": "requires_attention"})
        assert posted.status_code == 403
    assert reload(email_parked).state == "requires_attention"
    assert not SagaEvent.objects.filter(saga_id=email_parked.saga_id, actor="sam").exists()


def test_the_compensation_page_with_both_permissions_shows_the_plan(email_parked):
    client = staff("view_booking", "compensate_booking")
    response = client.get(transition_url(email_parked))
    assert response.status_code == 200
    assert shows_the_plan(response, email_parked)


@pytest.mark.parametrize("action", ["retry", "resolve_completed", "resolve_cancelled"])
def test_the_other_actions_need_the_view_permission_too(action, email_parked):
    codename = {"retry": "retry_booking"}.get(action, "resolve_booking")
    assert staff(codename).get(operate_url(email_parked, action)).status_code == 403
    with_view = staff("view_booking", codename, username="vic")
    assert with_view.get(operate_url(email_parked, action)).status_code == 200


@pytest.mark.parametrize(
    "name",
    [
        "save",  # a model method, not a transition
        "delete",
        "made_up_name",
        "require_attention",  # the engine's own transitions are not fired from the admin
        "resume",
        "complete",
    ],
)
def test_a_transition_the_console_does_not_offer_is_a_404(name, make_operator, completed):
    operator = make_operator("retry_booking", "compensate_booking", "resolve_booking")
    assert operator.get(transition_url(completed, name)).status_code == 404
    assert operator.post(transition_url(completed, name), {"reason": "x"}).status_code == 404
    assert reload(completed).state == "completed"


def test_an_unknown_action_or_booking_is_a_404(operator, completed):
    assert operator.get(operate_url(completed, "delete")).status_code == 404
    missing = reverse(
        "admin:bookings_booking_transition",
        args=["00000000-0000-0000-0000-000000000000", "begin_compensation"],
    )
    assert operator.get(missing).status_code == 404


def test_no_transition_button_without_the_view_permission(email_parked):
    client = staff("compensate_booking", "retry_booking", "resolve_booking")
    page = client.get(reverse("admin:bookings_booking_change", args=[email_parked.pk]))
    assert page.status_code == 403
