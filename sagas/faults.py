"""Failpoints for the fault suite, driven by settings.SAGA_FAULTS (JSON in the environment).
Empty in every real deployment, where each check is one dict lookup."""

import os
import time

from django.conf import settings


def before_action(step: str, direction: str, idempotency_key: str) -> None:
    """Runs just before a step's provider call: "crash_before_action" (a list of
    "<step>.<direction>" or of idempotency keys) makes a poison message that kills its worker
    process every time it is delivered."""
    faults = settings.SAGA_FAULTS
    if not faults:
        return
    poison = faults.get("crash_before_action", ())
    if f"{step}.{direction}" in poison or idempotency_key in poison:
        os._exit(71)


def after_action(step: str, direction: str) -> None:
    """Runs between a step's provider call and the commit of its outcome: the window in which a
    crash leaves an effect without a record."""
    faults = settings.SAGA_FAULTS
    if not faults:
        return
    key = f"{step}.{direction}"
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


def copies() -> int:
    """How many copies of each step message to send (duplicate deliveries)."""
    faults = settings.SAGA_FAULTS
    return int(faults.get("duplicate_messages", 1)) if faults else 1
