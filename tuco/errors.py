"""Domain errors raised by services. One handler (tuco.api.errors) maps them to the
API's error body, so no view builds error JSON by hand."""


class ServiceError(Exception):
    """A service refused a request.

    `message` is the error in words; `field` names the input it is about (an API
    field name or path such as "leads[3].phone" or "steps.1.delay"), or is empty.
    The API's error text is "<field>: <message>" (`str(exc)`), and forms put the
    message on the field it names.
    """

    status = 400
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        code: str | None = None,
        status: int | None = None,
        extra: dict | None = None,
        headers: dict | None = None,
    ):
        self.message = message
        self.field = field
        super().__init__(self.text)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra = extra or {}
        self.headers = headers or {}

    @property
    def text(self) -> str:
        """The error as the API words it: the field first, when there is one."""
        return f"{self.field}: {self.message}" if self.field else self.message

    def __str__(self) -> str:
        return self.text

    def body(self) -> dict:
        body = {"error": self.text}
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
