"""Guards around every provider call, with state shared by all workers: a rate limit per provider
and a circuit breaker per provider.

Both live in the coordination cache (settings.COORDINATION_CACHE: Redis in production, a file
cache shared by the processes of one machine otherwise), because a provider's limits and health
are facts about the provider, not about one worker.

Rate limit: Celery's own `rate_limit` is per worker and per task name, and every step runs the
same task, so it can neither tell providers apart nor hold a limit across N workers. Here a
fixed-window counter per provider (`cache.incr` is atomic in Redis) admits at most `n` calls per
window across the deployment; a step over the limit raises `Deferral` and runs in the next
window without spending a retry.

Circuit breaker: transient failures from `failure_threshold` different calls (idempotency keys,
so one flaky booking retrying cannot trip it alone) with no success in between, within
`window` seconds, open the circuit. While it is open the provider's steps are not attempted:
they raise `Deferral` until the cool-down ends, so an outage does not burn their retries nor
cancel their bookings. After the cool-down one call is let through as a probe (half-open): a
success closes the circuit, a transient failure opens it for another cool-down. A permanent
error (a declined card) is an answer, so it counts as a success of the provider.
"""

from __future__ import annotations

import logging
import random
import time
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, wraps
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import BaseCache
from django.utils.module_loading import import_string
from prometheus_client import Counter

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
    "rate_limited).",
    ["provider", "cause"],
)


@cache
def coordination_cache() -> BaseCache:
    """The cache every process of the deployment shares (see settings.COORDINATION_CACHE)."""
    conf = dict(settings.COORDINATION_CACHE)
    backend = import_string(conf.pop("BACKEND"))
    location = conf.pop("LOCATION", "")
    return backend(location, conf)


def _now() -> float:
    return time.time()


# --- values read once per guarded call -----------------------------------------------------------
# A guarded call needs from the coordination cache: the breaker's state, generation and failure
# count, and the keys other modules registered for the provider (the sandbox's outage flag).
# Code running inside the call reads them with `shared`.
#
# A process reads them for every provider at once, in one round trip, and answers the guarded
# calls it makes in the next settings.BOOKING_GUARD_READ_MAX_AGE seconds (0.1 by default) from
# that read: one Redis round trip per step was a fifth of a worker's own CPU per saga. So a
# circuit another process opens, or an outage flag it sets, is seen here at most that much
# later (calls already in flight race it anyway); whatever this process writes to a breaker or
# an outage flag drops its read at once. 0 reads at every call.

_EXTRA_KEYS: dict[str, list[str]] = {}
_read_at_call: ContextVar[dict[str, Any] | None] = ContextVar("guard_read_at_call", default=None)
_ABSENT = object()


@dataclass(frozen=True)
class _Snapshot:
    values: dict[str, Any]
    keys: frozenset[str]
    taken_at: float


_NEVER = _Snapshot({}, frozenset(), float("-inf"))
_snapshot = _NEVER  # replaced whole, never changed in place: threads see one read or another


def forget_shared_reads() -> None:
    """Read the coordination cache again at the next guarded call (this process changed it)."""
    global _snapshot
    _snapshot = _NEVER


def _keys_of(provider: str, generation: int) -> list[str]:
    """What a guarded call to `provider` reads, its failures as of `generation`."""
    prefix = f"circuit:{provider}"
    return [
        f"{prefix}:state",
        f"{prefix}:generation",
        f"{prefix}:failures:{generation}",
        *_EXTRA_KEYS.get(provider, ()),
    ]


def _read_shared(cache: BaseCache, wanted: list[str]) -> dict[str, Any]:
    """`wanted` keys' values: from this process's read of every provider's keys if it is recent
    enough and holds them all, else from a new one (one round trip)."""
    global _snapshot
    max_age = settings.BOOKING_GUARD_READ_MAX_AGE
    now = time.monotonic()
    snapshot = _snapshot
    if now - snapshot.taken_at >= max_age or not snapshot.keys.issuperset(wanted):
        keys = set(wanted)
        if max_age > 0:
            for provider in PROVIDERS:
                keys.update(_keys_of(provider, CircuitBreaker._generations.get(provider, 0)))
        snapshot = _Snapshot(cache.get_many(sorted(keys)), frozenset(keys), now)
        _snapshot = snapshot
    return {k: snapshot.values.get(k) for k in wanted}


def read_with_each_call(provider: str, key: str) -> None:
    """Fetch `key` together with the breaker's state at the start of each call to `provider`."""
    keys = _EXTRA_KEYS.setdefault(provider, [])
    if key not in keys:
        keys.append(key)


def shared(key: str) -> Any:
    """The coordination cache's value for `key`: as read at the start of the current guarded
    call if it was read then, else read now."""
    seen = _read_at_call.get()
    if seen is not None:
        value = seen.get(key, _ABSENT)
        if value is not _ABSENT:
            return value
    return coordination_cache().get(key)


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


class CircuitBreaker:
    """One provider's breaker; every method reads and writes the shared cache."""

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
        self._state_key = f"circuit:{provider}:state"
        self._probe_key = f"circuit:{provider}:probe"
        self._generation_key = f"circuit:{provider}:generation"

    # Failures are counted per "generation": a success starts a new one, which forgets the
    # failures of the old one without a read-modify-write race on a shared counter. Each process
    # remembers the generation it saw last, to read that generation's failures with the state.
    _generations: dict[str, int] = {}

    @property
    def _last_generation(self) -> int:
        return CircuitBreaker._generations.get(self.provider, 0)

    def _generation(self) -> int:
        return int(self.cache.get(self._generation_key) or 0)

    def _failures_key(self, generation: int) -> str:
        return f"circuit:{self.provider}:failures:{generation}"

    def status(self) -> CircuitStatus:
        """The circuit as every worker sees it now."""
        state = self.cache.get(self._state_key)
        failures = int(self.cache.get(self._failures_key(self._generation())) or 0)
        if state is None:
            return CircuitStatus(self.provider, "closed", failures=failures)
        phase = "open" if _now() < state["retry_at"] else "half_open"
        return CircuitStatus(self.provider, phase, state["opened_at"], state["retry_at"], failures)

    def before_call(self, key: str, extra: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
        """Let the call through (circuit closed, or this call is the half-open probe), or raise
        Deferral until the circuit may be probed. Returns the failure generation seen, for
        `succeeded`, and what was read: the failure count of that generation and the `extra`
        keys (one cache round trip for all of it, in the common case)."""
        failures_key = self._failures_key(self._last_generation)
        read = _read_shared(self.cache, [*_keys_of(self.provider, self._last_generation), *extra])
        generation = int(read[self._generation_key] or 0)
        if generation != self._last_generation:  # a success started a new generation meanwhile
            CircuitBreaker._generations[self.provider] = generation
            read.pop(failures_key)
        state = read[self._state_key]
        if state is None:
            return generation, read
        now = _now()
        if now >= state["retry_at"] and self.cache.add(
            self._probe_key, key, timeout=int(self.probe_timeout)
        ):
            log.info("circuit half-open: probing", extra={"provider": self.provider})
            return -1, read  # a probe: its success must close the circuit
        wait = max(state["retry_at"] - now, 1.0)
        CALLS_DEFERRED.labels(self.provider, "circuit_open").inc()
        raise Deferral(
            f"{self.provider} circuit is open (provider failing); waiting for the cool-down",
            delay=wait + random.uniform(0, min(5.0, self.cool_down / 2)),
            code="circuit_open",
        )

    def succeeded(self, generation: int | None = None, read: dict[str, Any] | None = None) -> None:
        """The provider answered: close the circuit and forget earlier failures. `generation`
        and `read` are what before_call returned (generation -1 after a probe); a failure
        another call counts while this one runs is forgotten by the next success, not this."""
        if generation is None or generation < 0:
            if self.cache.get(self._state_key) is not None:
                self.cache.delete_many([self._state_key, self._probe_key])
                forget_shared_reads()
                CIRCUIT_TRANSITIONS.labels(self.provider, "closed").inc()
                log.warning(
                    "circuit closed: provider answers again", extra={"provider": self.provider}
                )
            generation = self._generation()
        failures_key = self._failures_key(generation)
        failures = (read or {}).get(failures_key, _ABSENT)
        if failures is _ABSENT:
            failures = self.cache.get(failures_key)
        if failures:
            self.cache.set(self._generation_key, generation + 1, timeout=None)
            forget_shared_reads()

    def failed(self, key: str) -> bool:
        """Count a transient failure of the call made with `key`; True when the circuit is
        open afterwards (this failure opened it, or a half-open probe failed)."""
        forget_shared_reads()  # the failure count changes
        if self.cache.get(self._state_key) is not None:
            self._open(reason="probe failed")
            return True
        generation = self._generation()
        failures_key = self._failures_key(generation)
        # Count each call once, however many times it is retried within the window.
        if not self.cache.add(f"{failures_key}:{key}", 1, timeout=int(self.window)):
            return False
        self.cache.add(failures_key, 0, timeout=int(self.window))
        if self.cache.incr(failures_key) < self.failure_threshold:
            return False
        self._open(reason=f"{self.failure_threshold} calls failed")
        return True

    def _open(self, *, reason: str) -> None:
        now = _now()
        self.cache.set(
            self._state_key, {"opened_at": now, "retry_at": now + self.cool_down}, timeout=None
        )
        self.cache.delete(self._probe_key)
        forget_shared_reads()
        CIRCUIT_TRANSITIONS.labels(self.provider, "open").inc()
        log.warning(
            "circuit opened",
            extra={"provider": self.provider, "reason": reason, "cool_down": self.cool_down},
        )

    def reset(self) -> None:
        """Close the circuit and forget its failures (tests, or an operator after a fix)."""
        self.cache.delete_many([self._state_key, self._probe_key])
        self.cache.set(self._generation_key, self._generation() + 1, timeout=None)
        forget_shared_reads()


def circuit(provider: str) -> CircuitBreaker:
    """The breaker of `provider`, configured by settings.BOOKING_CIRCUIT_BREAKER_DEFAULTS and
    the provider's entry in settings.BOOKING_CIRCUIT_BREAKERS."""
    options = {
        **settings.BOOKING_CIRCUIT_BREAKER_DEFAULTS,
        **settings.BOOKING_CIRCUIT_BREAKERS.get(provider, {}),
    }
    return CircuitBreaker(provider, coordination_cache(), **options)


def rate_limiter(provider: str) -> RateLimiter | None:
    rate = settings.BOOKING_PROVIDER_RATE_LIMITS.get(provider)
    return RateLimiter(provider, rate, coordination_cache()) if rate else None


def circuit_states() -> list[CircuitStatus]:
    """Selector: every provider's circuit, for the operator dashboard, /health/ and /metrics."""
    return [circuit(provider).status() for provider in PROVIDERS]


# --- the wrapper the booking saga puts around each side effect -----------------------------------


def guarded(provider: str, side_effect: SideEffect) -> SideEffect:
    """`side_effect` behind `provider`'s rate limit and circuit breaker."""

    @wraps(side_effect)
    def run(ctx: StepContext) -> dict[str, Any] | None:
        limiter = rate_limiter(provider)
        if limiter is not None:
            limiter.acquire()
        breaker = circuit(provider)
        generation, read = breaker.before_call(
            ctx.idempotency_key, tuple(_EXTRA_KEYS.get(provider, ()))
        )
        token = _read_at_call.set(read)
        try:
            result = side_effect(ctx)
        except TransientError as exc:
            if breaker.failed(ctx.idempotency_key):
                # The provider is down, not this call: run the same attempt again after the
                # cool-down (its idempotency key makes that safe) instead of spending a retry.
                raise Deferral(
                    f"{exc.message} ({provider} circuit opened; waiting for the cool-down)",
                    delay=breaker.cool_down + random.uniform(0, min(5.0, breaker.cool_down / 2)),
                    code="circuit_open",
                ) from exc
            raise
        except PermanentError:
            breaker.succeeded(generation, read)
            raise
        finally:
            _read_at_call.reset(token)
        breaker.succeeded(generation, read)
        return result

    return run
