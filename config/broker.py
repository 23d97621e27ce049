"""The embedded broker (`filesystem://`, what `make run` and the SQLite test suite use): kombu's
filesystem transport with one fix, named by its dotted path in settings
(CELERY_BROKER_TRANSPORT = "config.broker:Transport").

kombu's filesystem transport opens the message file under its final name, then writes it: a
worker polling the folder can move and read that file before the bytes are in, get an empty
message and die of "Unrecoverable error: JSONDecodeError" (seen in the test suite: both workers
of a 200-saga run gone, every saga parked by the sweeper). Upstream: celery/kombu#1551, open,
present in kombu 5.7.0 (the version locked here). Here the message is written under a name the
readers skip (it does not end in `.<queue>.msg` after its first dot) and renamed into place,
which is atomic within one folder: a reader sees the whole file or none. `_put` is the method a
kombu virtual transport's channel implements for publishing; reading is kombu's own. Remove this
module once kombu writes its message files atomically.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.transport import filesystem
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
