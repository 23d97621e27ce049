"""Guards around every provider call, with state shared by all workers: a rate limit per provider
and a circuit breaker per provider.

Both live in the coordination cache (`caches["coordination"]`: Redis in production, a file
cache shared by the processes of one machine otherwise), because a provider's limits and health
are facts about the provider, not about one worker.

Rate limit: Celery's own `rate_limit` is per worker and per task name, and every step runs the
same task, so it can neither tell providers apart nor hold a limit across N workers. Here a
fixed-window counter per provider (`cache.incr` is atomic in Redis) admits at most `n` calls per
window across the deployment; a step over the limit raises `Deferral` and runs in the next
window without spending a retry.

Circuit breaker: transient failures from `failure_threshold` different calls (idempotency keys,
so one flaky booking retrying cannot trip it alone) with no success in between, within
`window` seconds, open the circuit. A success of any call forgets the failures counted so far
(as its process read them at most BOOKING_PROVIDER_HEALTH_TTL ago: see below),
so a few bookings that fail on their own (a card whose void is always refused) among healthy
traffic never open it. While it is open the provider's steps are not attempted: they raise
`Deferral` until the cool-down ends, so a short outage does not burn their retries. After the
cool-down one call is let through as a probe (half-open): a success closes the circuit, a
transient failure opens it for another cool-down. A call that already failed since the last
success does not take the probe while others may (it would most likely fail again and keep the
circuit open for everyone).

Every call that is made and fails transiently spends its attempt, the failure that opens the
circuit and a failed probe included: only a call that is not made is deferred for free. The
engine also bounds how long deferrals may hold a step back (RetryPolicy.max_wait), so a saga
whose calls keep failing reaches its end state whether other traffic closes the circuit or not.
A permanent error (a declined card) is an answer, so it counts as a success of the provider.

Reading the circuit before every call would cost each step a round trip to Redis (4 MGET per
saga; docs/performance.md, 2026-12-07). So each process keeps its last reading that a circuit is
healthy (closed, no failure counted) in its own memory (`caches["local"]`) for
BOOKING_PROVIDER_HEALTH_TTL seconds, counted from when the reading started, and admits calls
on it. A circuit that another process opens stops this one's calls at most that late; a
transient failure of this process's own call drops its copy at once (and a reading started
before that failure is not kept), and a reading of anything but health is never kept. A success
admitted on such a copy forgets nothing: failures that another process counted meanwhile are
forgotten by the next success admitted on a fresh reading. A failure admitted on it is counted
on a fresh reading. (A rate limit, when configured, still takes its counter in Redis per call.)

The coordination cache itself can be unreachable (Redis restarting). Before the call that means
the guards cannot be read: the call is not made and the step is deferred, without spending a
retry and for at most max_wait in all, like a call held back by an open circuit (a process that
read the circuit healthy less than BOOKING_PROVIDER_HEALTH_TTL ago still makes its calls until
then). After the call the provider's answer stands and only the breaker's bookkeeping of it is
lost (logged).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from prometheus_client import Counter

from config.cache import UNREACHABLE, KeptReading
from sagas.definition import SideEffect, StepContext
from sagas.errors import Deferral, PermanentError, TransientError

log = logging.getLogger(__name__)

PROVIDERS = ("fraud", "payments", "inventory", "email")

CIRCUIT_TRANSITIONS = Counter(
    "booking_provider_circuit_transitions",
    "Circuit breaker state changes, by provider and new state (open, closed).",
    ["provider", "state"],
)
CALLS_DEFERRED = Counter(
    "booking_provider_calls_deferred",
    "Provider calls not attempted and deferred, by provider and cause (circuit_open, "
    "rate_limited, coordination_unavailable).",
    ["provider", "cause"],
)


# How long a call waits when the guards could not be read (a Redis restart takes seconds).
UNREACHABLE_DELAY = 5.0


def _now() -> float:
    return time.time()


# --- rate limit ------------------------------------------------------------------------------

PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(rate: str) -> tuple[int, float]:
    """'20/s' -> (20, 1.0); '600/m' -> (600, 60.0)."""
    try:
        count, unit = rate.strip().split("/")
        return int(count), PERIODS[unit.strip()[0].lower()]
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"rate limit {rate!r}: expected '<calls>/<s|m|h>'") from None


class RateLimiter:
    """At most `calls` per `period` seconds for one provider, across every process."""

    def __init__(self, provider: str, rate: str, cache: BaseCache) -> None:
        self.provider = provider
        self.calls, self.period = parse_rate(rate)
        self.cache = cache

    def acquire(self) -> None:
        """Take one call from the current window, or raise Deferral until the next one."""
        now = _now()
        window = int(now // self.period)
        key = f"ratelimit:{self.provider}:{window}"
        self.cache.add(key, 0, timeout=int(self.period * 2) + 1)
        if self.cache.incr(key) <= self.calls:
            return
        CALLS_DEFERRED.labels(self.provider, "rate_limited").inc()
        # Spread the deferred calls over the next window instead of all at its first instant.
        delay = (window + 1) * self.period - now + random.uniform(0, self.period)
        raise Deferral(
            f"{self.provider}: rate limit of {self.calls} calls per {self.period:g}s reached",
            delay=delay,
            code="rate_limited",
        )


# --- circuit breaker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CircuitStatus:
    """What the dashboard, /health/ and /metrics show of one provider's circuit."""

    provider: str
    state: str  # "closed" | "open" | "half_open"
    opened_at: float | None = None
    retry_at: float | None = None
    failures: int = 0

    @property
    def is_open(self) -> bool:
        return self.state != "closed"


@dataclass(frozen=True)
class Admission:
    """What before_call found: whether this call is the half-open probe, and the failure count
    it saw (a success then knows whether there is anything to forget); `kept`: read from this
    process's copy of a healthy reading, not from the shared cache."""

    probe: bool
    failures: int
    epoch: int
    kept: bool = False


class CircuitBreaker:
    """One provider's breaker: its state in the shared cache, and this process's copy of a
    recent healthy reading of it (see the module's docstring).

    Keys: `state` (absent: closed; else when it opened and when it may be probed), `probe`
    (the key of the call probing it), `failures` (distinct failed calls since the last success),
    `epoch` (raised by each success that forgets failures, and by a reset) and one
    `failed:<epoch>:<key>` marker per failed call, so that a call retried again and again
    counts once until the failures are forgotten."""

    def __init__(
        self,
        provider: str,
        cache: BaseCache,
        *,
        failure_threshold: int = 5,
        window: float = 60,
        cool_down: float = 15,
        probe_timeout: float = 30,
    ) -> None:
        self.provider = provider
        self.cache = cache
        self.failure_threshold = failure_threshold
        self.window = window
        self.cool_down = cool_down
        self.probe_timeout = probe_timeout
        prefix = f"circuit:{provider}"
        self.health = KeptReading(f"{prefix}:healthy")
        self._state_key = f"{prefix}:state"
        self._probe_key = f"{prefix}:probe"
        self._failures_key = f"{prefix}:failures"
        self._epoch_key = f"{prefix}:epoch"
        self._marker_prefix = f"{prefix}:failed:"

    def _read(self) -> tuple[Any, Admission]:
        read = self.cache.get_many([self._state_key, self._failures_key, self._epoch_key])
        failures = int(read.get(self._failures_key) or 0)
        epoch = int(read.get(self._epoch_key) or 0)
        return read.get(self._state_key), Admission(False, failures, epoch)

    def _read_for_call(self) -> tuple[Any, Admission]:
        """The state as _read, or this worker's recent reading of a healthy circuit (closed,
        no failures counted): its epoch, kept for BOOKING_PROVIDER_HEALTH_TTL seconds."""
        epoch = self.health.get()
        if epoch is not None:
            return None, Admission(False, 0, epoch, kept=True)
        started = time.monotonic()
        state, seen = self._read()
        if state is None and not seen.failures:
            self.health.keep(seen.epoch, started)
        return state, seen

    def status(self) -> CircuitStatus:
        """The circuit as every worker sees it now."""
        state, seen = self._read()
        failures = seen.failures
        if state is None:
            return CircuitStatus(self.provider, "closed", failures=failures)
        phase = "open" if _now() < state["retry_at"] else "half_open"
        return CircuitStatus(self.provider, phase, state["opened_at"], state["retry_at"], failures)

    def before_call(self, key: str) -> Admission:
        """Let the call through (circuit closed, or this call is the half-open probe), or raise
        Deferral until the circuit may be probed. In the common case no cache round trip (a
        recent reading of a healthy circuit), or one."""
        state, seen = self._read_for_call()
        if state is None:
            return seen
        now = _now()
        if now >= state["retry_at"] and self._may_probe(key, state, seen, now):
            log.info("circuit half-open: probing", extra={"provider": self.provider})
            return Admission(probe=True, failures=seen.failures, epoch=seen.epoch)
        wait = max(state["retry_at"] - now, 1.0)
        CALLS_DEFERRED.labels(self.provider, "circuit_open").inc()
        raise Deferral(
            f"{self.provider} circuit is open (provider failing); waiting for the cool-down",
            delay=wait + random.uniform(0, min(5.0, self.cool_down / 2)),
            code="circuit_open",
            bounded=True,
        )

    def _may_probe(self, key: str, state: dict, seen: Admission, now: float) -> bool:
        """Whether this call takes the half-open probe. A call that already failed since the
        last success (its marker is set) waits while others may probe, for one more cool-down:
        a few bookings that fail on their own must not hold the circuit open for the healthy
        ones by failing every probe. Past that (no other call came), it may probe too."""
        known_bad = self.cache.get(self._marker(seen.epoch, key)) is not None
        if known_bad and now < state["retry_at"] + self.cool_down:
            return False
        return bool(self.cache.add(self._probe_key, key, timeout=int(self.probe_timeout)))

    def _marker(self, epoch: int, key: str) -> str:
        return f"{self._marker_prefix}{epoch}:{key}"

    def succeeded(self, admission: Admission | None = None) -> None:
        """The provider answered: close the circuit (after a probe) and forget the failures
        counted so far. Writes nothing when there is nothing to forget (the common case)."""
        if admission is None:  # known from elsewhere (an operator, a test): close and forget
            state, seen = self._read()
            admission = Admission(state is not None, max(seen.failures, 1), seen.epoch)
        if admission.probe:
            self.cache.delete_many([self._state_key, self._probe_key])
            CIRCUIT_TRANSITIONS.labels(self.provider, "closed").inc()
            log.warning("circuit closed: provider answers again", extra={"provider": self.provider})
        if admission.failures:
            self._forget_failures(admission.epoch)

    def _forget_failures(self, epoch: int) -> None:
        """A new epoch: the failures and the markers of the old one no longer count."""
        self.cache.set(self._epoch_key, epoch + 1, timeout=None)
        self.cache.delete(self._failures_key)

    def failed(self, key: str, admission: Admission | None = None) -> bool:
        """Count a transient failure of the call made with `key`; True when the circuit is
        open afterwards (this failure opened it, or it was the half-open probe)."""
        self.health.drop()
        if admission is None:
            state, admission = self._read()
            if state is not None:
                admission = Admission(True, admission.failures, admission.epoch)
        elif admission.kept:  # the copy's epoch may be old: count the failure in the current one
            admission = self._read()[1]
        # Count each call once, however many times it is retried within the window.
        first_failure = self.cache.add(
            self._marker(admission.epoch, key), 1, timeout=int(self.window + self.cool_down * 2)
        )
        if admission.probe:
            self._open(reason="probe failed")
            return True
        if not first_failure:
            return False
        self.cache.add(self._failures_key, 0, timeout=int(self.window))
        try:
            failures = self.cache.incr(self._failures_key)
        except ValueError:  # a success forgot the count in between: this failure starts anew
            self.cache.add(self._failures_key, 1, timeout=int(self.window))
            failures = 1
        if failures < self.failure_threshold:
            return False
        self._open(reason=f"{self.failure_threshold} calls failed")
        return True

    def _open(self, *, reason: str) -> None:
        self.health.drop()
        now = _now()
        self.cache.set(
            self._state_key, {"opened_at": now, "retry_at": now + self.cool_down}, timeout=None
        )
        self.cache.delete_many([self._probe_key, self._failures_key])
        CIRCUIT_TRANSITIONS.labels(self.provider, "open").inc()
        log.warning(
            "circuit opened",
            extra={"provider": self.provider, "reason": reason, "cool_down": self.cool_down},
        )

    def reset(self) -> None:
        """Close the circuit and forget its failures (tests, or an operator after a fix)."""
        self.health.drop()
        self.cache.delete_many([self._state_key, self._probe_key])
        self._forget_failures(self._read()[1].epoch)


def circuit(provider: str) -> CircuitBreaker:
    """The breaker of `provider`, configured by settings.BOOKING_CIRCUIT_BREAKER_DEFAULTS and
    the provider's entry in settings.BOOKING_CIRCUIT_BREAKERS."""
    options = {
        **settings.BOOKING_CIRCUIT_BREAKER_DEFAULTS,
        **settings.BOOKING_CIRCUIT_BREAKERS.get(provider, {}),
    }
    return CircuitBreaker(provider, caches["coordination"], **options)


def rate_limiter(provider: str) -> RateLimiter | None:
    rate = settings.BOOKING_PROVIDER_RATE_LIMITS.get(provider)
    return RateLimiter(provider, rate, caches["coordination"]) if rate else None


def circuit_states() -> list[CircuitStatus]:
    """Selector: every provider's circuit, for the operator dashboard, /health/ and /metrics."""
    return [circuit(provider).status() for provider in PROVIDERS]


# --- the wrapper the booking saga puts around each side effect -----------------------------------


def guarded(provider: str, side_effect: SideEffect) -> SideEffect:
    """`side_effect` behind `provider`'s rate limit and circuit breaker."""

    @wraps(side_effect)
    def run(ctx: StepContext) -> dict[str, Any] | None:
        try:
            limiter = rate_limiter(provider)
            if limiter is not None:
                limiter.acquire()
            breaker = circuit(provider)
            admission = breaker.before_call(ctx.idempotency_key)
        except UNREACHABLE as exc:
            CALLS_DEFERRED.labels(provider, "coordination_unavailable").inc()
            raise Deferral(
                f"{provider}: call not made, the coordination cache is unreachable ({exc})",
                # Spread: the steps deferred together do not all come back at one instant.
                delay=UNREACHABLE_DELAY * random.uniform(1, 2),
                code="coordination_unavailable",
                bounded=True,
            ) from exc
        try:
            result = side_effect(ctx)
        except TransientError:
            # The call was made and failed: it spends its attempt like any failure, even when
            # it opens the circuit (or was the probe that found it still failing).
            _bookkeep(provider, breaker.failed, ctx.idempotency_key, admission)
            raise
        except PermanentError:
            _bookkeep(provider, breaker.succeeded, admission)
            raise
        _bookkeep(provider, breaker.succeeded, admission)
        return result

    return run


def _bookkeep(provider: str, record: Callable[..., object], *args: Any) -> None:
    """Tell the breaker how a call went; the call's outcome stands if the cache is unreachable."""
    try:
        record(*args)
    except UNREACHABLE:
        log.warning("%s: the circuit breaker could not record a call's outcome", provider)
