import contextvars
import logging
import re

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")


class CorrelationIdFilter(logging.Filter):
    def filter(self, record):
        record.correlation_id = correlation_id.get()
        return True


# A `password` query parameter as requests encodes it (letters, digits, "_.~-", "+"
# and %XX escapes): how relays authenticate (lines/RELAY.md).
_PASSWORD_PARAM = re.compile(r"([?&]password=)[\w.~%+-]+")


def redact_password_params(text: str) -> str:
    """`text` with the value of every `password=` query parameter replaced by ***."""
    return _PASSWORD_PARAM.sub(r"\1***", text)


class PasswordParamFilter(logging.Filter):
    """Redacts `password=` query values from a logger's records (urllib3 logs URLs)."""

    def filter(self, record):
        message = record.getMessage()
        redacted = redact_password_params(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
