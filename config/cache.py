"""What the caches (config/settings: CACHES) raise when they cannot be reached or cannot take a
write, for the code that carries on without them (the provider guards, the sandbox's outage
flags, webhook wakes and drain slots); and a reading of the coordination cache that a process
keeps for a moment in its own memory (`KeptReading`)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MasterDownError, OutOfMemoryError, ReadOnlyError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError

# redis-py's connection errors (a restart; BusyLoadingError is one of them), the answers of a
# replica during a failover (READONLY, MASTERDOWN), TRYAGAIN and OOM (a Redis shared with the
# broker, full). django-redis raises redis-py's own errors (it wraps them only with
# IGNORE_EXCEPTIONS, which the coordination cache must never set: the guards would read an empty
# cache as a closed circuit).
REDIS_UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    MasterDownError,
    TryAgainError,
    OutOfMemoryError,
)
# The same, and OSError: the file cache's directory (the coordination cache of `make run`).
UNREACHABLE = (*REDIS_UNAVAILABLE, OSError)


class KeptReading:
    """One reading of the coordination cache that all is well (a provider's circuit closed, a
    sandbox up), kept in this process's own memory (`caches["local"]`) for at most
    BOOKING_PROVIDER_HEALTH_TTL seconds counted from when the reading started, so that the next
    calls need no round trip to Redis. Only good news is kept: whoever learns otherwise in this
    process drops it, and a reading that started before it was dropped (another thread's) is
    not kept. `memory`: another process's memory, in tests."""

    def __init__(self, key: str, memory: BaseCache | None = None) -> None:
        self.key = key
        self._dropped_key = f"{key}:dropped"
        self.memory = memory if memory is not None else caches["local"]

    def get(self) -> Any:
        """The value kept, or None."""
        return self.memory.get(self.key)

    def keep(self, value: Any, started: float) -> None:
        """Keep `value`, read from the coordination cache since `started` (time.monotonic()),
        for the rest of the TTL; not if it was dropped since."""
        left = settings.BOOKING_PROVIDER_HEALTH_TTL - (time.monotonic() - started)
        if left <= 0:
            return
        dropped = self.memory.get(self._dropped_key)
        if dropped is None or dropped < started:
            self.memory.set(self.key, value, timeout=left)

    def drop(self) -> None:
        """The reading no longer holds. Remembered past any reading started before now (the
        coordination cache's read timeouts are seconds)."""
        ttl = settings.BOOKING_PROVIDER_HEALTH_TTL
        self.memory.set(self._dropped_key, time.monotonic(), timeout=ttl + 10)
        self.memory.delete(self.key)
