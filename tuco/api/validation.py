"""Input validation for API operations.

Every operation validates its body (or query) with the input serializer its schema
shows, through `validated()`: the first error becomes a `ValidationFailed` naming
its field (`"leadIds: Provide at least one lead id"`), the API's one error body.
Serializers word their errors in the API's own texts: per-field `error_messages`,
the strict fields below, and `validate_<field>` / `validate` methods. A check
whose answer is not a 400 VALIDATION_ERROR (a 404, another code) raises the
`ServiceError` itself; DRF lets it through unchanged.
"""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.settings import api_settings

from tuco.errors import ValidationFailed


def first_error(detail, path: tuple[str, ...] = ()) -> tuple[str, str]:
    """(field path, message) of the first error in a DRF error structure. Nested
    fields join with dots; errors of the object as a whole have no field."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            return first_error(value, (*path, str(key)))
    if isinstance(detail, list) and detail:
        if all(isinstance(item, str) for item in detail):
            return _field(path), str(detail[0])
        for index, item in enumerate(detail):
            if item:
                return first_error(item, (*path, str(index)))
    return _field(path), str(detail)


def _field(path: tuple[str, ...]) -> str:
    return ".".join(part for part in path if part != api_settings.NON_FIELD_ERRORS_KEY)


def validated(serializer_class, data, *, context: dict | None = None, partial: bool = False):
    """The operation's validated input, or ValidationFailed for its first error."""
    serializer = serializer_class(data=data, context=context or {}, partial=partial)
    if not serializer.is_valid():
        field, message = first_error(serializer.errors)
        raise ValidationFailed(message, field=field)
    return serializer.validated_data


class StrictTextField(serializers.CharField):
    """Text as the API takes it: `null` means not given (the default, ""), whitespace is trimmed,
    and anything but a string is refused ("false" would otherwise read as text);
    with `numbers=True` a whole number is taken as its digits (phones, batch ids)."""

    default_error_messages = {
        "invalid": "must be a string",
        "max_length": "must be at most {max_length} characters",
    }

    def __init__(self, *, numbers: bool = False, **kwargs):
        self.numbers = numbers
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("allow_null", True)
        if not kwargs["required"]:
            kwargs.setdefault("default", "")
        super().__init__(**kwargs)

    def validate_empty_values(self, data):
        if data is None and not self.required:
            return True, self.default
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not (
            isinstance(data, str) or (self.numbers and isinstance(data, int))
        ):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true or false, nothing that merely reads as one ("yes", 1); `null` is false."""

    default_error_messages = {"invalid": "must be true or false"}

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        if not kwargs["required"]:
            kwargs.setdefault("default", False)
        super().__init__(**kwargs)

    def validate_empty_values(self, data):
        if data is None and not self.required:
            return True, False
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data
