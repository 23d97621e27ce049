"""The admin shows every time in one format (issue 18): the booking list, the booking page's
fields and its timeline all print Y-m-d H:i:s, never Django's "Dec. 1, 2026, 9:08 p.m."."""

import re

from django.utils import timezone

ISO = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?"
MONTHS = "Jan|Feb|March|April|May|June|July|Aug|Sept|Oct|Nov|Dec"
ENGLISH = rf"(a\.m\.|p\.m\.|noon|midnight|({MONTHS})\.? \d{{1,2}}, \d{{4}})"


def test_the_list_the_page_and_its_timeline_print_times_alike(operator, completed):
    created = timezone.localtime(completed.created_at).strftime("%Y-%m-%d %H:%M:%S")
    created_short = created[:16]  # the list leaves out the seconds
    listing = operator.get("/admin/bookings/booking/").content.decode()
    page = operator.get(f"/admin/bookings/booking/{completed.pk}/change/").content.decode()
    assert created_short in listing
    assert created in page
    assert completed.check_in.isoformat() in listing
    for html in (listing, page):
        assert re.search(ISO, html)
        assert not re.search(ENGLISH, html), re.search(ENGLISH, html)
