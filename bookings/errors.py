"""The application's one error type: services raise it, the API and the admin turn it into a
clean 4xx or a message."""


class ApplicationError(Exception):
    def __init__(
        self, message: str, *, status: int = 400, code: str = "invalid", extra: dict | None = None
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.extra = extra or {}
