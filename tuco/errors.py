"""Domain errors raised by services. One handler (tuco.api.errors) maps them to the
API's error body, so no view builds error JSON by hand."""


class ServiceError(Exception):
    status = 400
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        extra: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict:
        body = {"error": self.message}
        if self.code:
            body["code"] = self.code
        body.update(self.extra)
        return body


class ValidationFailed(ServiceError):
    status = 400
    code = "VALIDATION_ERROR"


class NotFound(ServiceError):
    status = 404
    code = "NOT_FOUND"


class Conflict(ServiceError):
    status = 409
    code = "CONFLICT"


class QuotaExhausted(ServiceError):
    status = 429
    code = "QUOTA_EXHAUSTED"
