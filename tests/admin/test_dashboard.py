"""The operations dashboard: counts per state, the generated state diagram, stuck bookings,
bookings waiting for an operator, and recent failures."""

import pytest
from django.urls import reverse

from bookings.models import Booking

from .conftest import make_stuck

pytestmark = pytest.mark.django_db
URL = reverse("admin:bookings_booking_dashboard")


def test_dashboard_shows_counts_diagram_stuck_attention_and_failures(
    operator, room, completed, void_parked, email_parked
):
    stuck = make_stuck(room)
    html = operator.get(URL).content.decode()
    assert "Bookings per state (4 in all)" in html
    counts = html.split('id="state-counts"')[1].split("</div>")[0]
    assert 'data-state="requires_attention"' in counts
    assert 'state-requires_attention">requires_attention</span><span class="n">2</span>' in counts
    # The diagram is generated from the FSM, one node per state, with the same counts.
    diagram = html.split('id="state-diagram"')[1]
    for state in Booking.State.values:
        assert f'data-state="{state}"' in diagram
    assert "resolve_completed" in diagram and "begin_compensation" in diagram
    stuck_panel = html.split('id="stuck-bookings"')[1].split('id="attention-bookings"')[0]
    assert stuck.reference in stuck_panel and completed.reference not in stuck_panel
    attention = html.split('id="attention-bookings"')[1].split('id="recent-failures"')[0]
    assert void_parked.reference in attention and email_parked.reference in attention
    assert "compensation of preauthorize failed" in attention
    failures = html.split('id="recent-failures"')[1]
    assert "<strong>gateway</strong>" in failures  # the void failing, three times
    assert "<strong>unavailable</strong>" in failures and "<strong>email</strong>" in failures


def test_admin_home_leads_to_the_dashboard(operator):
    html = operator.get(reverse("admin:index")).content.decode()
    assert URL in html


def test_dashboard_needs_the_view_permission(make_operator, client, db):
    from ..factories import UserFactory

    staff = UserFactory(username="nobody", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
