"""Per-client and per-address throttles, and failed authentications per address, counted in the
default cache (Redis in production, so every web process shares the counts). Rates come from
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] at request time rather than at import, so a deployment
(or a test) can change them.

Each count is a sliding window kept as two numbers: this window's requests and the last one's
(the approximation Cloudflare and NGINX describe). DRF's own SimpleRateThrottle keeps a list of
every request's time in the window and reads, trims and writes all of it back on each request:
at 300/minute that is 300 floats, but a client allowed 100,000/hour pays for a list of up to
100,000 on every request. Here a request reads and writes three integers whatever the rate."""

from __future__ import annotations

import math
from typing import Any, cast

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle


class SlidingWindowThrottle(SimpleRateThrottle):
    """A SimpleRateThrottle (rates, keys, cache and timer as DRF's) that counts in two fixed
    windows of the rate's period: the requests of the last `period` seconds are estimated as this
    window's plus the last window's share still inside the period, rounded up. The counts are
    read and written back, as DRF's throttle does (two processes that read the same count at
    the same instant both add one to it: a burst across processes can pass a few over)."""

    num_requests: int  # set by SimpleRateThrottle.__init__ from the rate (used only with one)
    duration: int
    # Not DRF's keys: a process still running DRF's throttle (during a deploy) would read these
    # counts as its list of times and fail on them; the two count apart meanwhile.
    cache_format = "throttle_window_%(scope)s_%(ident)s"

    def get_rate(self) -> str | None:
        return cast(str | None, api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or ""))

    def allow_request(self, request: Any, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        if self.over():
            return False
        self.count_one()
        return True

    def over(self) -> bool:
        """Whether the window is full (reads the counts of `self.key`, counts nothing)."""
        self.now = self.timer()
        position = self.now / self.duration
        self.window = math.floor(position)
        self.into = position - self.window  # how far into this window, 0 to 1
        saved = self.cache.get(self.key)
        if not (isinstance(saved, tuple) and len(saved) == 3):
            saved = (None, 0, 0)  # none yet (or not ours: counted anew)
        self.current = self.previous = 0
        if saved[0] == self.window:
            _, self.current, self.previous = saved
        elif saved[0] == self.window - 1:
            self.previous = saved[1]
        return self.estimate() >= self.num_requests

    def estimate(self) -> int:
        return self.current + math.ceil(self.previous * (1 - self.into))

    def count_one(self) -> None:
        self.current += 1
        # Kept through the next window, where it is that window's "last window".
        self.cache.set(self.key, (self.window, self.current, self.previous), 2 * self.duration)

    def wait(self) -> float:
        """Seconds until the estimate is below the rate again (at least one)."""
        if self.num_requests <= 0:  # a rate of 0: never
            return float(self.duration)
        room = self.num_requests - self.current  # this window's requests stay until it ends
        if room > 0:
            # The last window's share must fall below `room`: previous * (1 - into) < room.
            into = 1 - (room - 1) / self.previous if self.previous else self.into
            return max(1.0, (into - self.into) * self.duration)
        # Full on its own: next window, this window's share must fall below the rate.
        into = 1 - (self.num_requests - 1) / self.current
        return max(1.0, (1 - self.into + into) * self.duration)


class ClientRateThrottle(SlidingWindowThrottle, UserRateThrottle):
    """Requests per authenticated client (user id); anonymous requests are left to the next."""

    scope = "client"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class AnonymousRateThrottle(SlidingWindowThrottle, AnonRateThrottle):
    """Requests per anonymous client address (the schema and the docs are public)."""

    scope = "anonymous"


class FailedAuthenticationThrottle(SlidingWindowThrottle):
    """Failed authentications per client address (REST_FRAMEWORK["NUM_PROXIES"] says which
    address). Authentication runs before DRF's throttles, so a flood of invalid tokens would
    otherwise cost a database lookup each and never be refused; ThrottledTokenAuthentication
    asks this throttle first and counts each failure here."""

    scope = "failed_authentication"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def exhausted(self, request: Any) -> bool:
        """Whether this address has failed as often as the rate allows within its window; counts
        nothing. Without a rate for the scope, never."""
        if self.rate is None:
            return False
        self.key = self.get_cache_key(request, None)
        return self.over()

    def record_failure(self, request: Any) -> None:
        """Count one failed authentication from this address."""
        if self.rate is None:
            return
        self.exhausted(request)  # reads this address's counts
        self.count_one()
