"""Sandbox outages: take a sandbox provider down for a while, as a real provider sometimes is.

The flag lives in the coordination cache with the outage's length as its expiry, so every worker
sees it and it ends by itself. While it is set, every call to that sandbox fails with a transient
error, exactly what a gateway timing out looks like to the saga."""

from __future__ import annotations

import time

from sagas.errors import TransientError

from .guard import PROVIDERS, coordination_cache


def _key(provider: str) -> str:
    return f"sandbox:outage:{provider}"


def take_down(provider: str, seconds: float) -> float:
    """Make `provider`'s sandbox fail every call for `seconds`; returns when it comes back."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
    until = time.time() + seconds
    coordination_cache().set(_key(provider), until, timeout=max(1, round(seconds)))
    return until


def bring_up(provider: str) -> None:
    """End an outage early."""
    coordination_cache().delete(_key(provider))


def down_until(provider: str) -> float | None:
    """When the outage of `provider` ends, or None when it is up."""
    until = coordination_cache().get(_key(provider))
    return until if until and until > time.time() else None


def raise_if_down(provider: str) -> None:
    """Called first by every sandbox method: fail like an unreachable provider."""
    if down_until(provider) is not None:
        raise TransientError(
            f"{provider} provider unavailable (sandbox outage)", code="provider_unavailable"
        )
