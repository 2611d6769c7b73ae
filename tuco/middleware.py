import logging
import re
import secrets

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

from tuco.api import parsers
from tuco.logging import correlation_id

logger = logging.getLogger(__name__)

HEADER = "x-correlation-id"
_VALID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _from_body(request) -> str | None:
    """The body's top-level `correlationId`. A body that does not mention one is not
    parsed here; a malformed one is left to the view, which answers it after auth."""
    if request.content_type != "application/json" or request.method in ("GET", "HEAD"):
        return None
    raw = request.body
    if b'"correlationId"' not in raw:
        return None
    try:
        body = parsers.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    value = body.get("correlationId") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


class CorrelationIdMiddleware:
    """Echo the caller's correlation id (header or body) or make one, for logs and replies."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        too_big = False
        value = request.headers.get(HEADER)
        if not value or not _VALID.match(value):
            try:
                value = _from_body(request)
            except RequestDataTooBig:
                too_big = True
        if not value or not _VALID.match(value):
            value = "app_" + secrets.token_hex(8)
        request.correlation_id = value
        token = correlation_id.set(value)
        try:
            if too_big:
                response = api_error_response(413)
            else:
                response = self.get_response(request)
        finally:
            correlation_id.reset(token)
        response[HEADER] = value
        return response


def is_api_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


class ApiErrorMiddleware:
    """Errors raised outside DRF views (unknown URL, crash in middleware) under /api/ get
    the API's JSON error body instead of an HTML page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            is_api_path(request.path)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return api_error_response(response.status_code)
        return response

    def process_exception(self, request, exception):
        if not is_api_path(request.path):
            return None
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return api_error_response(500)


_DEFAULT_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
    415: "Unsupported media type",
    500: "Internal server error",
}


def api_error_response(status: int) -> JsonResponse:
    body = {"error": _DEFAULT_MESSAGES.get(status, "Error")}
    if status == 404:
        body["code"] = "NOT_FOUND"
    elif status == 413:
        body["code"] = "PAYLOAD_TOO_LARGE"
    elif status == 500:
        body["code"] = "INTERNAL_ERROR"
    return JsonResponse(body, status=status)
