"""Per-client and per-address throttles, and failed authentications per address, counted in the
default cache (Redis in production, so every web process shares the counts). Rates come from
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] at request time rather than at import, so a deployment
(or a test) can change them.

A rate of N per period is a bucket of N requests that refills by one every period/N: a client
may send N at once, then one every period/N (so at most 2N - 1 within any one period, N per
period sustained). Kept as one number per client, the time at which its bucket is full again:
the generic cell rate algorithm (GCRA) of ATM networks, which redis-cell and the rate limiters
of the large APIs describe. DRF's own SimpleRateThrottle keeps every request's time in the
period and reads, trims and writes all of them back on each request: at 300/minute that is up
to 300 floats, but a client allowed 100,000/hour pays for a list of up to 100,000 each time."""

from __future__ import annotations

import math
from typing import Any, cast

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle


class BucketThrottle(SimpleRateThrottle):
    """A SimpleRateThrottle (rates, keys, cache and timer as DRF's) counting by GCRA: a request
    passes if the client's bucket still holds one, that is if its "full again" time is at most
    period - period/N ahead; a request that passes moves that time on by period/N. Read and
    written back as DRF's throttle does: two processes that read the same time at the same
    instant both pass, so a burst across processes can pass a few over."""

    num_requests: int  # set by SimpleRateThrottle.__init__ from the rate (used only with one)
    duration: int
    # Not DRF's keys: a process still running DRF's throttle (during a deploy) would read these
    # times as its list of times and fail on them; the two count apart meanwhile.
    cache_format = "throttle_bucket_%(scope)s_%(ident)s"

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
        """Whether the bucket of `self.key` is empty (reads it, counts nothing)."""
        self.now = self.timer()
        saved = self.cache.get(self.key)
        # Anything but a time (none yet, or not ours) is a full bucket.
        fresh = not isinstance(saved, int | float) or isinstance(saved, bool)
        self.full_at = self.now if fresh else max(float(saved), self.now)
        if self.num_requests <= 0:  # a rate of 0: never
            return True
        return self.full_at - self.now > self.duration - self.interval

    @property
    def interval(self) -> float:
        return self.duration / self.num_requests

    def count_one(self) -> None:
        self.full_at += self.interval
        # Kept until the bucket is full again, when it would be read as none anyway.
        self.cache.set(self.key, self.full_at, math.ceil(self.full_at - self.now) + 1)

    def wait(self) -> float:
        """Seconds until the bucket holds one request again."""
        if self.num_requests <= 0:
            return float(self.duration)
        return max(0.001, self.full_at - self.now - (self.duration - self.interval))


class ClientRateThrottle(BucketThrottle, UserRateThrottle):
    """Requests per authenticated client (user id); anonymous requests are left to the next."""

    scope = "client"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class AnonymousRateThrottle(BucketThrottle, AnonRateThrottle):
    """Requests per anonymous client address (the schema and the docs are public)."""

    scope = "anonymous"


class FailedAuthenticationThrottle(BucketThrottle):
    """Failed authentications per client address (REST_FRAMEWORK["NUM_PROXIES"] says which
    address). Authentication runs before DRF's throttles, so a flood of invalid tokens would
    otherwise cost a database lookup each and never be refused; ThrottledTokenAuthentication
    asks this throttle first and counts each failure here."""

    scope = "failed_authentication"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def exhausted(self, request: Any) -> bool:
        """Whether this address has failed as often as the rate allows for now; counts
        nothing. Without a rate for the scope, never."""
        if self.rate is None:
            return False
        self.key = self.get_cache_key(request, None)
        return self.over()

    def record_failure(self, request: Any) -> None:
        """Count one failed authentication from this address."""
        if self.rate is None:
            return
        self.exhausted(request)  # reads this address's bucket
        self.count_one()
