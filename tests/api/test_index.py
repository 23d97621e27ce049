"""`/` and `/api/v1/` answer indexes of links instead of 404 (issue 18)."""

import re
from urllib.parse import urlsplit

from django.test import Client
from django.urls import resolve

from ops.index import HOME_LINKS


def test_the_front_page_links_the_admin_the_api_its_docs_health_and_metrics(db):
    page = Client().get("/")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    hrefs = re.findall(r'<a href="([^"]+)"', page.content.decode())
    assert {
        "/admin/",
        "/api/v1/",
        "/api/v1/docs/",
        "/api/v1/redoc/",
        "/api/v1/schema/",
        "/health/",
        "/metrics",
    } <= set(hrefs)
    assert len(hrefs) == len(HOME_LINKS)
    for href in hrefs:
        resolve(href)  # each one is a route of ours (Resolver404 otherwise)


def test_the_api_root_lists_the_endpoints_and_each_answers(alice):
    root = Client().get("/api/v1/")  # public, like the schema
    assert root.status_code == 200 and root["Content-Type"] == "application/json"
    links = root.json()
    assert set(links) >= {"bookings", "resources", "webhook-endpoints", "events", "docs"}
    assert links["bookings"] == "http://testserver/api/v1/bookings/"
    for key, url in links.items():
        answer = alice.get(urlsplit(url).path)
        assert answer.status_code == 200, (key, answer.status_code)
