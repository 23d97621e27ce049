"""What the caches (config/settings: CACHES) raise when they cannot be reached or cannot take a
write, for the code that carries on without them (the provider guards, the sandbox's outage
flags, webhook wakes and drain slots)."""

from __future__ import annotations

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
