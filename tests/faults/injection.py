"""Fault injection for the fault suite, installed as an engine plug-in by the test settings
(SAGA_ENGINE_PLUGINS) and driven by settings.SAGA_FAULTS (JSON in the environment of a worker
the test starts):

- "crash_before_action": a list of "<step>.<direction>" or of idempotency keys: a poison
  message that kills its worker process every time it is delivered;
- "pause_after_action": {"<step>.<direction>": seconds}: sleep between a step's provider call
  and the commit of its outcome (the window in which a crash leaves an effect unrecorded);
- "exit_after_action": a list of "<step>.<direction>", with "exit_marker" a file: the worker
  exits in that window, once;
- "duplicate_messages": how many copies of each step message to send.

`messages_lost()` drops, in this process, every step message sent inside it, as if the broker
had lost it after the commit: the sweeper must find those attempts and send them again."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings

from sagas.definition import StepContext
from sagas.plugins import EnginePlugin

log = logging.getLogger(__name__)

# Test code: a flag of this process, set only inside messages_lost().
_dropping = {"depth": 0}


@contextmanager
def messages_lost() -> Iterator[None]:
    _dropping["depth"] += 1
    try:
        yield
    finally:
        _dropping["depth"] -= 1


class FaultInjection(EnginePlugin):
    def before_action(self, ctx: StepContext) -> None:
        poison = settings.SAGA_FAULTS.get("crash_before_action", ())
        if f"{ctx.step}.{ctx.direction}" in poison or ctx.idempotency_key in poison:
            os._exit(71)

    def after_action(self, ctx: StepContext) -> None:
        faults = settings.SAGA_FAULTS
        key = f"{ctx.step}.{ctx.direction}"
        pause = faults.get("pause_after_action", {}).get(key)
        if pause:
            time.sleep(float(pause))
        if key in faults.get("exit_after_action", ()):
            marker = faults.get("exit_marker")
            # Crash once: the marker file records that the crash already happened.
            if not marker or not os.path.exists(marker):
                if marker:
                    open(marker, "w").close()
                os._exit(70)

    def copies(self, step_id: int, copies: int) -> int:
        if _dropping["depth"]:
            log.warning("fault injection: message for step attempt %s dropped", step_id)
            return 0
        return int(settings.SAGA_FAULTS.get("duplicate_messages", copies))
