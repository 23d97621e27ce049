"""The provider guards on their own, against the shared coordination cache: circuit breaker,
rate limit, sandbox outage switch."""

from __future__ import annotations

import time

import pytest
import redis
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.management import call_command

from bookings.providers.guard import (
    CircuitBreaker,
    RateLimiter,
    circuit,
    circuit_states,
    guarded,
    parse_rate,
)
from config.cache import KeptReading
from devtools.harness import free_port
from sagas.definition import StepContext
from sagas.errors import Deferral, PermanentError, TransientError
from sandbox import outage


def breaker(**options) -> CircuitBreaker:
    b = CircuitBreaker("payments", caches["coordination"], **options)
    b.reset()
    return b


def ctx(key: str) -> StepContext:
    return StepContext("s", "booking", "t", "preauthorize", "action", 1, key, {}, {})


def test_circuit_opens_after_failures_of_distinct_calls_and_defers_calls_while_open():
    b = breaker(failure_threshold=3, window=60, cool_down=30)
    assert b.failed("k1") is False
    assert b.failed("k2") is False
    assert b.status().state == "closed"
    assert b.failed("k3") is True
    assert b.status().state == "open"
    with pytest.raises(Deferral) as deferred:
        b.before_call("k4")
    assert (deferred.value.code, deferred.value.bounded) == ("circuit_open", True)
    assert 29 <= deferred.value.delay <= 36


def test_one_call_failing_again_and_again_does_not_open_the_circuit():
    b = breaker(failure_threshold=3)
    for _ in range(10):
        assert b.failed("same-booking") is False
    assert b.status().state == "closed"


def test_a_success_forgets_earlier_failures():
    b = breaker(failure_threshold=3)
    b.failed("k1")
    b.failed("k2")
    b.succeeded()
    assert b.failed("k3") is False
    assert b.status().failures == 1


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes_the_circuit():
    b = breaker(failure_threshold=1, cool_down=0.2)
    assert b.failed("k1") is True
    time.sleep(0.3)
    assert b.status().state == "half_open"
    b.before_call("probe")  # the probe is let through
    with pytest.raises(Deferral):
        b.before_call("another")  # only one probe at a time
    b.succeeded()
    assert b.status().state == "closed"
    b.before_call("next")


def test_a_failed_probe_opens_the_circuit_for_another_cool_down():
    b = breaker(failure_threshold=1, cool_down=0.2)
    b.failed("k1")
    time.sleep(0.3)
    b.before_call("probe")
    assert b.failed("probe") is True
    assert b.status().state == "open"


def test_guarded_step_spends_the_failure_that_opens_the_circuit_and_defers_the_next(settings):
    settings.BOOKING_CIRCUIT_BREAKERS = {"payments": {"failure_threshold": 2, "cool_down": 5}}

    def failing(_ctx: StepContext) -> dict:
        raise TransientError("gateway timeout", code="gateway")

    step = guarded("payments", failing)
    for key in ("k1", "k2"):  # both calls were made: both failures are spent as such
        with pytest.raises(TransientError) as failed:
            step(ctx(key))
        assert not isinstance(failed.value, Deferral)
    assert [s.state for s in circuit_states() if s.provider == "payments"] == ["open"]
    with pytest.raises(Deferral) as deferred:  # not made: deferred without spending a retry
        step(ctx("k3"))
    assert deferred.value.code == "circuit_open"


def test_a_failed_probe_spends_its_attempt_and_opens_the_circuit_again(settings):
    settings.BOOKING_CIRCUIT_BREAKERS = {"payments": {"failure_threshold": 1, "cool_down": 0.2}}

    def failing(_ctx: StepContext) -> dict:
        raise TransientError("void refused", code="gateway")

    step = guarded("payments", failing)
    with pytest.raises(TransientError):
        step(ctx("k1"))
    time.sleep(0.3)
    with pytest.raises(TransientError) as probe:  # the probe was made and failed
        step(ctx("k2"))
    assert not isinstance(probe.value, Deferral)
    assert circuit("payments").status().state == "open"


def test_a_call_that_already_failed_leaves_the_probe_to_others_for_one_cool_down():
    b = breaker(failure_threshold=2, cool_down=0.3)
    b.failed("bad-1")
    assert b.failed("bad-2") is True
    time.sleep(0.35)
    with pytest.raises(Deferral):  # half-open, but this call failed since the last success
        b.before_call("bad-1")
    assert b.before_call("healthy").probe  # a call with no failure behind it probes
    b.succeeded()
    assert b.status().state == "closed"


def test_with_no_other_call_around_a_failed_call_probes_after_one_more_cool_down():
    b = breaker(failure_threshold=1, cool_down=0.3)
    assert b.failed("bad") is True
    time.sleep(0.35)
    with pytest.raises(Deferral):
        b.before_call("bad")
    time.sleep(0.3)
    assert b.before_call("bad").probe


def test_guarded_step_counts_a_permanent_error_as_an_answer_of_the_provider(settings):
    settings.BOOKING_CIRCUIT_BREAKERS = {"payments": {"failure_threshold": 2}}
    calls = []

    def flaky_then_declined(_ctx: StepContext) -> dict:
        calls.append(_ctx.idempotency_key)
        if len(calls) == 1:
            raise TransientError("timeout", code="gateway")
        raise PermanentError("declined", code="payment_declined")

    step = guarded("payments", flaky_then_declined)
    with pytest.raises(TransientError):
        step(ctx("k1"))
    with pytest.raises(PermanentError):
        step(ctx("k2"))
    assert circuit("payments").status().failures == 0


def test_rate_limit_is_shared_and_defers_calls_over_it_to_the_next_window():
    limiter = RateLimiter("fraud", "3/s", caches["coordination"])
    # Start at the beginning of a window so that the four calls fall in the same one.
    time.sleep(1 - time.time() % 1 + 0.01)
    for _ in range(3):
        limiter.acquire()
    with pytest.raises(Deferral) as deferred:
        RateLimiter("fraud", "3/s", caches["coordination"]).acquire()
    assert (deferred.value.code, deferred.value.bounded) == ("rate_limited", False)
    assert 0 < deferred.value.delay <= 2


def test_parse_rate_accepts_per_second_minute_and_hour_and_rejects_nonsense():
    assert parse_rate("20/s") == (20, 1.0)
    assert parse_rate("600/min") == (600, 60.0)
    assert parse_rate("5/h") == (5, 3600.0)
    with pytest.raises(ValueError):
        parse_rate("fast")


def test_sandbox_outage_command_makes_the_sandbox_fail_until_it_ends():
    call_command("sandbox_outage", provider="email", seconds=30)
    assert outage.down_until("email") is not None
    with pytest.raises(TransientError) as down:
        outage.raise_if_down("email")
    assert down.value.code == "provider_unavailable"
    call_command("sandbox_outage", provider="email", end=True)
    outage.raise_if_down("email")


def test_sandbox_outage_ends_by_itself():
    outage.take_down("fraud", 1)
    assert outage.down_until("fraud") is not None
    time.sleep(1.2)
    assert outage.down_until("fraud") is None


def test_sandbox_outage_refuses_an_unknown_provider():
    with pytest.raises(ValueError):
        outage.take_down("weather", 10)


def count_round_trips(monkeypatch) -> list[str]:
    """Record each call made through the coordination cache's client (the library's object,
    shared by every guard), by method name; a call a method makes to another (the file cache's
    get_many calls get) is part of the outer one."""
    cache = caches["coordination"]
    calls: list[str] = []
    depth = [0]
    for name in ("get", "get_many", "set", "add", "incr", "delete", "delete_many"):

        def counted(*args, _name=name, _method=getattr(cache, name), **kwargs):
            if not depth[0]:
                calls.append(_name)
            depth[0] += 1
            try:
                return _method(*args, **kwargs)
            finally:
                depth[0] -= 1

        monkeypatch.setattr(cache, name, counted)
    return calls


def expire_kept_readings() -> None:
    """What BOOKING_PROVIDER_HEALTH_TTL seconds do to this process's memory (the test below
    waits for the real expiry once)."""
    caches["local"].clear()


@pytest.mark.parametrize("ttl", [5, 0])
def test_successful_calls_read_the_shared_cache_once_per_health_ttl_and_write_nothing(
    monkeypatch, settings, ttl
):
    settings.BOOKING_PROVIDER_HEALTH_TTL = ttl
    circuit("fraud").reset()
    step = guarded("fraud", lambda _ctx: {"ok": True})
    calls = count_round_trips(monkeypatch)
    for key in ("k1", "k2", "k3"):
        assert step(ctx(key)) == {"ok": True}
    assert calls == ["get_many"] * (1 if ttl else 3)
    expire_kept_readings()
    assert step(ctx("k4")) == {"ok": True}
    assert calls == ["get_many"] * (2 if ttl else 4)


def test_a_kept_reading_expires_after_the_health_ttl(monkeypatch, settings):
    settings.BOOKING_PROVIDER_HEALTH_TTL = 0.2
    circuit("fraud").reset()
    step = guarded("fraud", lambda _ctx: {"ok": True})
    calls = count_round_trips(monkeypatch)
    step(ctx("k1"))
    time.sleep(0.3)
    step(ctx("k2"))
    assert calls == ["get_many"] * 2


def other_worker(failure_threshold: int = 1) -> CircuitBreaker:
    """The payments breaker as another worker process has it: the same shared cache, its own
    memory."""
    other = CircuitBreaker("payments", caches["coordination"], failure_threshold=failure_threshold)
    other.health = KeptReading(other.health.key, LocMemCache("another-worker", {}))
    return other


@pytest.mark.parametrize("ttl", [5, 0])
def test_a_circuit_another_worker_opens_stops_this_ones_calls_at_most_a_health_ttl_later(
    settings, ttl
):
    settings.BOOKING_PROVIDER_HEALTH_TTL = ttl
    settings.BOOKING_CIRCUIT_BREAKERS = {"payments": {"failure_threshold": 1, "cool_down": 30}}
    circuit("payments").reset()
    made = []
    step = guarded("payments", lambda c: made.append(c.idempotency_key) or {"ok": True})
    step(ctx("before"))
    assert other_worker().failed("elsewhere") is True  # opened, in the shared cache only
    if ttl:  # this worker read the circuit healthy a moment ago: it still calls
        step(ctx("within-ttl"))
        expire_kept_readings()
    with pytest.raises(Deferral) as deferred:
        step(ctx("after"))
    assert deferred.value.code == "circuit_open"
    assert made == (["before", "within-ttl"] if ttl else ["before"])


def test_a_failure_of_this_workers_own_call_makes_its_next_call_read_the_circuit(
    monkeypatch, settings
):
    settings.BOOKING_PROVIDER_HEALTH_TTL = 10
    settings.BOOKING_CIRCUIT_BREAKERS = {"payments": {"failure_threshold": 100}}
    circuit("payments").reset()
    fail = [False, True, False]

    def call(_ctx: StepContext) -> dict:
        if fail.pop(0):
            raise TransientError("gateway timeout", code="gateway")
        return {"ok": True}

    step = guarded("payments", call)
    step(ctx("healthy"))  # read healthy, kept for 10 s
    with pytest.raises(TransientError):
        step(ctx("fails"))  # counted; the circuit stays closed (threshold 100)
    calls = count_round_trips(monkeypatch)
    step(ctx("next"))
    assert calls[0] == "get_many"  # read again, not admitted on the copy


def test_a_failure_admitted_on_a_kept_reading_is_counted_once_in_the_current_epoch(settings):
    settings.BOOKING_PROVIDER_HEALTH_TTL = 10
    settings.BOOKING_CIRCUIT_BREAKERS = {"payments": {"failure_threshold": 100}}
    mine = circuit("payments")
    mine.reset()
    admitted = mine.before_call("k")  # read healthy: the copy holds this epoch
    other = other_worker(failure_threshold=100)
    seen = other.before_call("x")
    other.failed("x", seen)
    other.succeeded(other.before_call("y"))  # forgets that failure: a new epoch
    kept = mine.before_call("k")
    assert kept.kept and kept.epoch == admitted.epoch  # this process did not read again
    mine.failed("k", kept)
    mine.failed("k")  # the same call failing again, read fresh: not counted twice
    assert mine.status().failures == 1


def test_a_reading_that_started_before_a_failure_of_this_process_is_not_kept(settings):
    """Under `--pool threads`: one thread reads the circuit while another's call fails."""
    settings.BOOKING_PROVIDER_HEALTH_TTL = 10
    breaker_ = circuit("payments")
    breaker_.reset()
    read = breaker_._read

    def read_while_another_thread_fails():  # type: ignore[no-untyped-def]
        answer = read()  # healthy, as read before the failure below
        breaker_.health.drop()
        return answer

    breaker_._read = read_while_another_thread_fails  # type: ignore[method-assign]
    assert not breaker_.before_call("k").kept
    breaker_._read = read  # type: ignore[method-assign]
    assert not breaker_.before_call("k2").kept  # nothing was kept: read again


def test_an_outage_flag_set_before_the_call_is_seen_by_it():
    circuit("fraud").reset()

    def sandbox_call(_ctx: StepContext) -> dict:
        outage.raise_if_down("fraud")
        return {"ok": True}

    step = guarded("fraud", sandbox_call)
    step(ctx("before"))
    outage.take_down("fraud", 30)
    try:
        with pytest.raises(TransientError) as down:
            step(ctx("during"))
        assert down.value.code == "provider_unavailable"
    finally:
        outage.bring_up("fraud")
    assert step(ctx("after")) == {"ok": True}


@pytest.mark.parametrize("ttl", [5, 0])
def test_an_outage_started_by_another_process_reaches_this_one_at_most_a_health_ttl_later(
    settings, ttl
):
    settings.BOOKING_PROVIDER_HEALTH_TTL = ttl
    outage.raise_if_down("fraud")  # up
    # Another process takes it down: the flag in the shared cache, nothing in this memory.
    caches["coordination"].set(outage._key("fraud"), time.time() + 30, timeout=30)
    if ttl:
        outage.raise_if_down("fraud")  # read up a moment ago
        expire_kept_readings()
    with pytest.raises(TransientError) as down:
        outage.raise_if_down("fraud")
    assert down.value.code == "provider_unavailable"


def test_a_success_forgets_the_failures_read_with_the_state(settings):
    settings.BOOKING_CIRCUIT_BREAKERS = {"payments": {"failure_threshold": 3}}
    circuit("payments").reset()
    outcomes = iter(["fail", "fail", "ok", "fail", "fail", "fail"])

    def sometimes(_ctx: StepContext) -> dict:
        if next(outcomes) == "fail":
            raise TransientError("timeout", code="gateway")
        return {}

    step = guarded("payments", sometimes)
    for key in ("k1", "k2"):
        with pytest.raises(TransientError):
            step(ctx(key))
    step(ctx("k3"))  # the success: the two failures are forgotten
    assert circuit("payments").status().failures == 0
    for key in ("k4", "k5", "k6"):  # the third failure since the success opens it
        with pytest.raises(TransientError) as failed:
            step(ctx(key))
        assert not isinstance(failed.value, Deferral)
    assert circuit("payments").status().is_open
    with pytest.raises(Deferral):
        step(ctx("k7"))


def test_with_the_coordination_cache_down_the_call_is_not_made_and_defers_for_free(
    coordination_redis,
):
    calls = []
    step = guarded("payments", lambda _ctx: calls.append(_ctx.idempotency_key) or {})
    coordination_redis.stop()
    with pytest.raises(Deferral) as deferred:
        step(ctx("k1"))
    assert (deferred.value.code, deferred.value.bounded) == ("coordination_unavailable", True)
    assert calls == []
    coordination_redis.start()
    assert step(ctx("k1")) == {}
    assert calls == ["k1"]


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        ("READONLY", redis.exceptions.ReadOnlyError),
        ("MASTERDOWN", redis.exceptions.MasterDownError),
    ],
)
def test_a_coordination_cache_turned_replica_defers_the_call_for_free(
    coordination_redis, settings, answer, raised
):
    """After a failover the address may reach a replica: writes answer READONLY and, if it
    serves no stale data, reads answer MASTERDOWN. Neither is a provider's failure."""
    if answer == "READONLY":  # the rate limit writes before every call; the circuit reads
        settings.BOOKING_PROVIDER_RATE_LIMITS = {"payments": "100/s"}
    calls = []
    step = guarded("payments", lambda _ctx: calls.append(_ctx.idempotency_key) or {})
    admin = redis.Redis.from_url(coordination_redis.url())
    dead = free_port()
    if answer == "MASTERDOWN":
        admin.config_set("replica-serve-stale-data", "no")
    admin.replicaof("127.0.0.1", dead)  # a master that does not answer
    with pytest.raises(Deferral) as deferred:
        step(ctx("k1"))
    assert (deferred.value.code, deferred.value.bounded) == ("coordination_unavailable", True)
    assert isinstance(deferred.value.__cause__, raised)
    assert calls == []
    admin.replicaof("NO", "ONE")  # promoted
    assert step(ctx("k1")) == {}
    assert calls == ["k1"]


def test_a_call_made_keeps_its_outcome_when_the_coordination_cache_goes_down_during_it(
    coordination_redis,
):
    def call(_ctx: StepContext) -> dict:
        if _ctx.idempotency_key != "first":
            coordination_redis.stop()  # the provider answers; the breaker cannot record it
        if _ctx.idempotency_key in ("first", "timeout"):
            raise TransientError("gateway timeout", code="gateway")
        return {"reference": "auth_1"}

    step = guarded("payments", call)
    with pytest.raises(TransientError):  # a failure counted: the next success has to forget it
        step(ctx("first"))
    assert step(ctx("ok")) == {"reference": "auth_1"}
    coordination_redis.start()
    with pytest.raises(TransientError) as failed:
        step(ctx("timeout"))
    assert failed.value.code == "gateway"


def test_an_unreadable_outage_flag_leaves_the_sandbox_up(coordination_redis):
    outage.take_down("fraud", 30)
    assert outage.down_until("fraud") is not None
    coordination_redis.restart()  # the flag is gone with the cache's contents; and while down:
    coordination_redis.stop()
    assert outage.down_until("fraud") is None
    outage.raise_if_down("fraud")
