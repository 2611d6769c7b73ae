"""OpenAPI post-processing: every operation documents the shared error responses.

The conventions (auth, billing, rate limits, validation) apply to every endpoint
through the base view, so their responses are added here once instead of on
each view.
"""

import re

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "code": {"type": "string"},
    },
    "required": ["error"],
    "additionalProperties": True,
}

COMMON_ERRORS = {
    "400": "Validation error",
    "401": "Missing, invalid or revoked API key",
    "402": "Workspace is read-only (billing past due)",
    "404": "Not found (or belongs to another workspace)",
    "405": "Method not allowed",
    "409": "Conflict (identifier collision or idempotency key in use)",
    "415": "Unsupported media type",
    "422": "Idempotency key reused with a different body",
    "429": "Rate limit or quota exceeded; see Retry-After",
}


def add_error_responses(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for code, description in COMMON_ERRORS.items():
                response = {"description": description, "content": ref}
                operation["responses"].setdefault(code, response)
    return result


class TucoAutoSchema(AutoSchema):
    """Names that stay unique across the whole API.

    Views nest their serializers as `InputSerializer` / `OutputSerializer`
    (one view per operation), so component names and operation ids are taken
    from the view class rather than from the serializer alone.
    """

    def get_serializer_name(self, serializer, direction):
        qualname = type(serializer).__qualname__
        if "." in qualname:
            return qualname.replace("Serializer", "").replace(".", "")
        return super().get_serializer_name(serializer, direction)

    def get_operation_id(self):
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(self.view).__name__).lower()
        name = name.removesuffix("_api").removesuffix("_view")
        return f"{name}_{self.method.lower()}"


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tuco.api.auth.ApiKeyAuthentication"
    name = ["bearerAuth", "apiKeyHeader"]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "http", "scheme": "bearer", "description": "tuco_sk_… workspace key"},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]


class SessionAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tuco.api.auth.WorkspaceSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
