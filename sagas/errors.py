"""The two kinds of failure a step may report; the engine decides what each one means."""


class StepError(Exception):
    """Base class: a step's side effect did not succeed."""

    def __init__(self, message: str, *, code: str = "step_failed", data: dict | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data or {}


class TransientError(StepError):
    """Worth retrying: a timeout, a 5xx, a provider that is briefly down."""


class PermanentError(StepError):
    """Retrying cannot help (a declined card, a fraud rejection, no room): undo what was done."""


class SagaStateError(Exception):
    """An operation that the saga's current state does not allow (cancel a cancelled saga...)."""


class Deferral(StepError):
    """The step was not attempted (for example its provider's circuit breaker is open): run the
    same attempt again after `delay` seconds, without spending one of its retries.

    `bounded`: the step waits for something that is down (an open circuit, an unreachable
    cache) rather than for a limit that frees up by itself (a rate limit): past the step's
    give-up time (RetryPolicy.give_up_after) it fails as if its retries had run out."""

    def __init__(
        self, message: str, *, delay: float, code: str = "deferred", bounded: bool = False
    ):
        super().__init__(message, code=code)
        self.delay = delay
        self.bounded = bounded
