"""The broker transports, two of kombu's with one fix each: the embedded broker (`filesystem://`,
what `make run` and the SQLite test suite use) writes each message whole before it can be seen,
and the Redis transport keeps one redis-py client per channel.

Embedded broker:

kombu's filesystem transport opens the message file under its final name, then writes it: a
worker polling the folder can move and read that file before the bytes are in, get an empty
message and die of "Unrecoverable error: JSONDecodeError" (seen in the test suite: both workers
of a 200-saga run gone, every saga parked by the sweeper). Here the message is written under a
name the readers skip (it does not end in `.<queue>.msg` after its first dot) and renamed into
place, which is atomic within one folder: a reader sees the whole file or none. Reading is
kombu's.

Redis: kombu's Redis channel builds a new `redis.Redis` object for each message it publishes
and for each delivery and each acknowledgement it records (`conn_or_acquire`), and building
one registers a couple of hundred response callbacks: a twentieth of a worker's Python time per
saga, and of the creating process's. Here the channel keeps one client on its connection pool
(a redis-py client is safe to share; its pool re-creates its connections after a fork) and
makes a new one only when kombu replaces the pool. Everything else is kombu's.

Installed for their schemes by config/celery.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

DRAIN_SLICE = 0.25


class Channel(filesystem.Channel):
    # kombu's two bases name the parameters differently (payload / message): either is "wrong".
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Put the message onto `queue`: written under a hidden name, then renamed into place."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb", buffering=0) as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel

    def drain_events(self, connection: Any, timeout: float | None = None) -> Any:  # type: ignore[override]
        """kombu's, with each poll cut to DRAIN_SLICE seconds. Celery's worker loop for a
        transport without an event loop drains for 2 s at a time and looks at its shutdown flag
        only between drains: SIGTERM then took 6-7 s to stop an idle worker, past the 5 s honcho
        (`make run`) waits before SIGKILL. The loop simply drains again after a short slice."""
        if timeout is not None:
            timeout = min(timeout, DRAIN_SLICE)
        return super().drain_events(connection, timeout=timeout)


class RedisChannel(kombu_redis.Channel):
    _sync_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """The client given, or this channel's own (kombu's makes a new one each time)."""
        if client:
            yield client
            return
        pool = self.pool
        if self._sync_client is None or self._sync_client.connection_pool is not pool:
            self._sync_client = self._create_client()
        yield self._sync_client


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


def install() -> None:
    """Make `filesystem://`, `redis://` and `rediss://` URLs use these transports (kombu
    resolves the scheme by alias)."""
    TRANSPORT_ALIASES["filesystem"] = f"{__name__}:Transport"
    TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = f"{__name__}:RedisTransport"
