"""The API docs work with no internet (issue 18): Swagger UI and Redoc come from the product's
own static files (drf-spectacular-sidecar), so a browser that may reach nothing but the live
server still lists the operations."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route

pytestmark = [pytest.mark.browser, pytest.mark.django_db]


def offline(page: Page, base: str) -> list[tuple[str, str]]:
    """Abort every request that leaves the live server; return (resource type, URL) of those
    that tried to."""
    host = urlsplit(base).netloc
    blocked: list[tuple[str, str]] = []

    def route(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == host:
            route.continue_()
        else:
            blocked.append((route.request.resource_type, url))
            route.abort()

    page.route("**/*", route)
    return blocked


def test_swagger_ui_lists_the_operations_with_no_internet(live_server, browser_page):
    page = browser_page
    blocked = offline(page, live_server.url)
    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_selector(".opblock-summary-path")
    paths = {
        p.strip().replace("\u200b", "")
        for p in page.locator(".opblock-summary-path").all_inner_texts()
    }
    assert {"/api/v1/bookings/", "/api/v1/bookings/{id}/cancel/", "/api/v1/resources/"} <= paths
    assert blocked == []


def test_redoc_lists_the_operations_with_no_internet(live_server, browser_page):
    page = browser_page
    blocked = offline(page, live_server.url)
    page.goto(f"{live_server.url}/api/v1/redoc/")
    page.wait_for_selector("[data-section-id^='operation/']")
    text = page.locator("body").inner_text()
    assert "/api/v1/bookings/{id}/cancel/" in text
    assert "Booking operations platform: client API" in text
    # Redoc's bundle itself shows the "API docs by Redocly" footer logo from its CDN; the only
    # thing missing offline is that picture, never a script, style sheet or font.
    assert {kind for kind, _url in blocked} <= {"image"}, blocked
