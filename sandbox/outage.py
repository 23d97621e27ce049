"""Sandbox outages: take a sandbox provider down for a while, as a real provider sometimes is.

The flag lives in the coordination cache with the outage's length as its expiry, so every worker
sees it and it ends by itself. While it is set, every call to that sandbox fails with a transient
error, exactly what a gateway that cannot be reached looks like to the saga. Each sandbox call
reads the flag, like the guard reads a provider's circuit (bookings/providers/guard.py): a
worker keeps its last reading that the sandbox is up for BOOKING_PROVIDER_HEALTH_TTL seconds, so
an outage started from another process reaches it at most that late; one started or ended from
this process is seen at once (an outage is never kept)."""

from __future__ import annotations

import time

from django.core.cache import caches

from bookings.providers.base import KINDS, ProviderUnavailable
from config.cache import UNREACHABLE, KeptReading


def _key(provider: str) -> str:
    return f"sandbox:outage:{provider}"


def take_down(provider: str, seconds: float) -> float:
    """Make `provider`'s sandbox fail every call for `seconds`; returns when it comes back."""
    if provider not in KINDS:
        raise ValueError(f"unknown provider {provider!r}; one of {', '.join(KINDS)}")
    until = time.time() + seconds
    caches["coordination"].set(_key(provider), until, timeout=max(1, round(seconds)))
    KeptReading(_up_key(provider)).drop()
    return until


def bring_up(provider: str) -> None:
    """End an outage early."""
    caches["coordination"].delete(_key(provider))


def down_until(provider: str) -> float | None:
    """When the outage of `provider` ends, or None when it is up. A flag that cannot be read
    (the coordination cache is restarting) is no outage: a real provider does not depend on
    our cache."""
    try:
        until = caches["coordination"].get(_key(provider))
    except UNREACHABLE:
        return None
    return until if until and until > time.time() else None


def raise_if_down(provider: str) -> None:
    """Called first by every sandbox method: fail like an unreachable provider."""
    up = KeptReading(_up_key(provider))
    if up.get():
        return
    started = time.monotonic()
    if down_until(provider) is not None:
        raise ProviderUnavailable(f"{provider} provider unavailable (sandbox outage)")
    up.keep(True, started)


def _up_key(provider: str) -> str:
    return f"sandbox:up:{provider}"
