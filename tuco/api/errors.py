import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from tuco.api.validation import first_error
from tuco.errors import ServiceError

logger = logging.getLogger(__name__)


class ReadOnlyWorkspace(exceptions.APIException):
    status_code = 402
    default_detail = "READ_ONLY"


class RateLimited(exceptions.APIException):
    status_code = 429
    default_detail = "Rate limit exceeded"

    def __init__(self, retry_after: int):
        super().__init__()
        self.retry_after = retry_after


def validation_body(detail) -> dict:
    field, message = first_error(detail)
    text = f"{field}: {message}" if field else message
    return {"error": text, "code": "VALIDATION_ERROR", "details": detail}


def exception_handler(exc, context):
    headers = {}
    if isinstance(exc, ServiceError):
        return Response(exc.body(), status=exc.status, headers=exc.headers)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"error": "Request body too large", "code": "PAYLOAD_TOO_LARGE"}, status=413
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, ReadOnlyWorkspace):
        body = {"error": "READ_ONLY", "code": "READ_ONLY", "reason": "past_due"}
    elif isinstance(exc, RateLimited):
        body = {"error": "Rate limit exceeded", "code": "RATE_LIMITED"}
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        body = {"error": "Unauthorized"}
        exc.status_code = 401
    elif isinstance(exc, exceptions.ValidationError):
        body = validation_body(exc.detail)
    elif isinstance(exc, exceptions.ParseError):
        body = {"error": f"Malformed request body: {exc.detail}", "code": "PARSE_ERROR"}
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        body = {"error": str(exc.detail), "code": "UNSUPPORTED_MEDIA_TYPE"}
    elif isinstance(exc, exceptions.MethodNotAllowed):
        body = {"error": str(exc.detail), "code": "METHOD_NOT_ALLOWED"}
    elif isinstance(exc, exceptions.NotFound):
        body = {"error": "Not found", "code": "NOT_FOUND"}
    elif isinstance(exc, exceptions.PermissionDenied):
        body = {"error": str(exc.detail), "code": "FORBIDDEN"}
    elif isinstance(exc, exceptions.APIException):
        body = {"error": str(exc.detail)}
    else:
        logger.exception("Unhandled API error", exc_info=exc)
        return Response({"error": "Internal server error", "code": "INTERNAL_ERROR"}, status=500)
    return Response(body, status=exc.status_code, headers=headers)
