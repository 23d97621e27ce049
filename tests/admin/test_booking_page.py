"""The booking page (saga timeline, audit trail, transition buttons) and the saga admin."""

import pytest
from django.urls import reverse

from bookings import services
from sagas.models import SagaStep

pytestmark = pytest.mark.django_db


def page(client, booking) -> str:
    response = client.get(reverse("admin:bookings_booking_change", args=[booking.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_booking_page_shows_every_attempt_of_every_step_and_compensation(operator, void_parked):
    html = page(operator, void_parked)
    rows = SagaStep.objects.filter(saga_id=void_parked.saga_id)
    assert rows.filter(direction="compensation").count() == 3  # the void, tried three times
    assert html.count('<tr class="compensation">') == 3
    assert html.count('<tr class="action">') == rows.filter(direction="action").count()
    assert "void refused (sandbox: card whose voids fail)" in html
    assert "no room available on the requested nights" in html
    assert "ms</td>" in html  # durations
    assert "Saga timeline (6 attempts)" in html


def test_booking_page_shows_who_did_what_and_why(operator, email_parked):
    services.booking_retry(booking=email_parked, actor="nadia", reason="mail relay fixed")
    html = page(operator, email_parked)
    assert "nadia" in html and "mail relay fixed" in html and "<strong>retry</strong>" in html
    assert "<strong>parked</strong>" in html  # the engine's own intervention, by "system"


def test_transition_buttons_offer_compensation_but_hide_hand_only_transitions(
    operator, email_parked
):
    html = page(operator, email_parked)
    # begin_compensation is allowed from requires_attention and routed through the service.
    assert 'id="transition-begin_compensation"' in html
    # resume / resolve_* are custom admin=False, and the engine's own transitions never show.
    for hidden in ("resume", "resolve_completed", "resolve_cancelled", "require_attention"):
        assert f'id="transition-{hidden}"' not in html
    # The operator actions that stand for them do, each behind its permission.
    for action in ("retry", "resolve_completed", "resolve_cancelled"):
        assert f'id="action-{action}"' in html


def test_no_button_for_an_action_the_operator_may_not_run(make_operator, email_parked):
    viewer = make_operator()
    html = page(viewer, email_parked)
    assert "transition-begin_compensation" not in html and 'id="action-' not in html


def test_a_booking_parked_while_compensating_is_not_offered_compensation(operator, void_parked):
    html = page(operator, void_parked)
    assert "transition-begin_compensation" not in html
    assert 'id="action-retry"' in html


def test_completed_booking_offers_only_compensation(operator, completed):
    html = page(operator, completed)
    assert 'id="transition-begin_compensation"' in html
    assert 'id="action-' not in html


def test_booking_page_has_no_save_button(operator, completed):
    assert 'name="_save"' not in page(operator, completed)


def test_saga_admin_is_read_only_and_linked_both_ways(operator, completed):
    booking_page = page(operator, completed)
    saga_url = reverse("admin:sagas_saga_change", args=[completed.saga_id])
    assert saga_url in booking_page
    saga_page = operator.get(saga_url).content.decode()
    assert reverse("admin:bookings_booking_change", args=[completed.pk]) in saga_page
    assert 'name="_save"' not in saga_page
    assert operator.post(saga_url, {}).status_code == 403


def test_saga_and_step_lists_are_searchable_by_booking_reference(operator, completed, email_parked):
    sagas = operator.get(reverse("admin:sagas_saga_changelist"), {"q": completed.reference})
    html = sagas.content.decode()
    assert str(completed.saga_id) in html and str(email_parked.saga_id) not in html
    steps = operator.get(reverse("admin:sagas_sagastep_changelist"), {"q": completed.reference})
    html = steps.content.decode()
    saga_url = reverse("admin:sagas_saga_change", args=[completed.saga_id])
    assert html.count(saga_url) == 4  # its four attempts, each linked to the saga
    assert str(email_parked.saga_id) not in html
    booking_url = reverse("admin:bookings_booking_change", args=[completed.pk])
    assert booking_url in html


def test_step_page_links_to_its_saga_and_booking(operator, completed):
    step = SagaStep.objects.filter(saga_id=completed.saga_id).first()
    html = operator.get(reverse("admin:sagas_sagastep_change", args=[step.pk])).content.decode()
    assert reverse("admin:sagas_saga_change", args=[completed.saga_id]) in html
    assert reverse("admin:bookings_booking_change", args=[completed.pk]) in html
