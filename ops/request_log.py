"""The client's address in a request's log lines: the one the throttles count.

django-structlog binds `ip` from django-ipware by default, which takes the left-most public
address of X-Forwarded-For (and of a few other headers) whatever sent it: with no proxy in front,
or behind one, a client could write any address it liked into the logs. Its own binding is off
(DJANGO_STRUCTLOG_IP_LOGGING_ENABLED); this receiver of its `bind_extra_request_metadata` signal
binds DRF's `get_ident()` instead: the connection's address, or the one the last of
REST_FRAMEWORK["NUM_PROXIES"] proxies saw (API_NUM_PROXIES, docs/security.md), as the throttles
do.
"""

from __future__ import annotations

from typing import Any

import structlog
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle


def bind_client_address(sender: Any, request: HttpRequest, **kwargs: Any) -> None:
    # DRF's rule reads the request's META; its signature wants DRF's wrapper of the request.
    structlog.contextvars.bind_contextvars(ip=BaseThrottle().get_ident(Request(request)))
