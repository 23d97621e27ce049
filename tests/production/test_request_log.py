"""The client address in a request's log line is the one the throttles count: a client cannot
write its own into the logs with X-Forwarded-For."""

from __future__ import annotations

from django.test import Client


def finished_lines(json_logs) -> list[dict]:
    return [line for line in json_logs.records() if line.get("event") == "request_finished"]


def test_without_a_proxy_the_log_holds_the_peer_address_whatever_the_header_says(db, json_logs):
    Client(REMOTE_ADDR="198.51.100.7").get("/health/web/", HTTP_X_FORWARDED_FOR="203.0.113.9")
    [line] = finished_lines(json_logs)
    assert line["ip"] == "198.51.100.7"


def test_behind_one_proxy_the_log_holds_the_address_it_appended(db, settings, json_logs):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    balancer = Client(REMOTE_ADDR="10.0.0.1")
    # The client wrote the first address; the balancer appended the one it saw.
    balancer.get("/health/web/", HTTP_X_FORWARDED_FOR="203.0.113.9, 192.0.2.10")
    [line] = finished_lines(json_logs)
    assert line["ip"] == "192.0.2.10"
