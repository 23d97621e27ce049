"""The provider guards on their own, against the shared coordination cache: circuit breaker,
rate limit, sandbox outage switch."""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command

from bookings.providers import guard
from bookings.providers.guard import (
    CircuitBreaker,
    RateLimiter,
    circuit,
    circuit_states,
    coordination_cache,
    guarded,
    parse_rate,
)
from sagas.definition import StepContext
from sagas.errors import Deferral, PermanentError, TransientError
from sandbox import outage


def breaker(**options) -> CircuitBreaker:
    b = CircuitBreaker("payments", coordination_cache(), **options)
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
    assert deferred.value.code == "circuit_open"
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


def test_guarded_step_turns_the_failure_that_opens_the_circuit_into_a_deferral(settings):
    settings.BOOKING_CIRCUIT_BREAKERS = {"payments": {"failure_threshold": 2, "cool_down": 5}}

    def failing(_ctx: StepContext) -> dict:
        raise TransientError("gateway timeout", code="gateway")

    step = guarded("payments", failing)
    with pytest.raises(TransientError) as first:
        step(ctx("k1"))
    assert not isinstance(first.value, Deferral)
    with pytest.raises(Deferral) as second:
        step(ctx("k2"))
    assert second.value.code == "circuit_open"
    assert [s.state for s in circuit_states() if s.provider == "payments"] == ["open"]


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
    limiter = RateLimiter("fraud", "3/s", coordination_cache())
    # Start at the beginning of a window so that the four calls fall in the same one.
    time.sleep(1 - time.time() % 1 + 0.01)
    for _ in range(3):
        limiter.acquire()
    with pytest.raises(Deferral) as deferred:
        RateLimiter("fraud", "3/s", coordination_cache()).acquire()
    assert deferred.value.code == "rate_limited"
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
    cache = coordination_cache()
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


def provider_call_to(provider: str):
    # A provider call that reads nothing itself: the round trips counted are the guard's (the
    # sandbox's outage switch reads its own flag, one more round trip, in the sandbox only).
    def provider_call(_ctx: StepContext) -> dict:
        return {"ok": True}

    return guarded(provider, provider_call)


def test_calls_to_every_provider_share_one_round_trip_per_read_interval(monkeypatch, settings):
    settings.BOOKING_GUARD_READ_MAX_AGE = 2.0  # room for a busy machine between the calls
    providers = ("fraud", "payments", "inventory", "email")
    for provider in providers:
        circuit(provider).reset()
    steps = [provider_call_to(provider) for provider in providers]
    for step in steps:
        step(ctx("warm-up"))  # each provider's failure generation learnt
    calls = count_round_trips(monkeypatch)
    guard.forget_shared_reads()
    for _ in range(3):
        for step in steps:
            assert step(ctx("k1")) == {"ok": True}
    assert calls == ["get_many"]  # twelve calls, four providers
    time.sleep(2.05)
    steps[1](ctx("k2"))
    assert calls == ["get_many", "get_many"]  # the read grew old: read again, once


def test_with_no_read_interval_each_call_reads_its_provider_once(monkeypatch, settings):
    settings.BOOKING_GUARD_READ_MAX_AGE = 0
    step = provider_call_to("fraud")
    step(ctx("warm-up"))
    calls = count_round_trips(monkeypatch)
    for key in ("k1", "k2", "k3"):
        assert step(ctx(key)) == {"ok": True}
    assert calls == ["get_many"] * 3


def test_a_circuit_another_process_opened_is_seen_once_the_read_is_older_than_the_interval(
    settings,
):
    settings.BOOKING_GUARD_READ_MAX_AGE = 1.0
    circuit("payments").reset()
    step = provider_call_to("payments")
    step(ctx("warm-up"))  # the failure generation learnt
    assert step(ctx("k1")) == {"ok": True}
    # Another process opens the circuit: written straight into the shared cache, as its
    # CircuitBreaker._open does, without this process knowing.
    now = time.time()
    coordination_cache().set(
        "circuit:payments:state", {"opened_at": now, "retry_at": now + 30}, timeout=None
    )
    try:
        assert step(ctx("k2")) == {"ok": True}  # this process's read is still young
        time.sleep(1.05)
        with pytest.raises(Deferral) as deferred:
            step(ctx("k3"))
        assert deferred.value.code == "circuit_open"
    finally:
        circuit("payments").reset()
    assert step(ctx("k4")) == {"ok": True}  # this process reset it: seen at once


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
    for key in ("k4", "k5"):
        with pytest.raises(TransientError) as failed:
            step(ctx(key))
        assert not isinstance(failed.value, Deferral)
    with pytest.raises(Deferral):  # the third failure since the success opens it
        step(ctx("k6"))
