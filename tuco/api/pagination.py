"""The one pagination input of the API's paged lists: `page` and `limit` in the query.

Every paged list endpoint validates its query with a subclass of `PageQuery`, which
adds the endpoint's filters and sets its page size and how it words (and, for some,
holds in range) a bad number, as each endpoint has published. A page above MAX_PAGE
is refused the same way everywhere: no list is that long, and the offset it makes
must stay within what the database takes.
"""

from __future__ import annotations

from rest_framework import serializers

MAX_PAGE = 1_000_000


class PageField(serializers.IntegerField):
    """A whole number of at least 1 and at most `maximum` from the query string;
    absent or empty is the default. `invalid` replaces DRF's texts for a value that is
    not a whole number or is below 1; `clamp_low` / `clamp_high` hold a number below 1
    or above `maximum` in range instead of refusing it."""

    def __init__(
        self,
        *,
        default: int,
        maximum: int,
        invalid: str | None = None,
        clamp_low: bool = False,
        clamp_high: bool = False,
        error_messages: dict | None = None,
    ):
        self.maximum = maximum
        self.invalid = invalid
        self.clamp_low = clamp_low
        self.clamp_high = clamp_high
        messages = dict(error_messages or {})
        if invalid:
            messages.setdefault("invalid", invalid)
            messages.setdefault("min_value", invalid)
        super().__init__(required=False, default=default, error_messages=messages)

    def to_internal_value(self, data) -> int:
        if self.invalid:
            try:
                number = int(data)
            except (TypeError, ValueError):
                self.fail("invalid")
        else:
            number = super().to_internal_value(data)
        if number < 1:
            if not self.clamp_low:
                self.fail("min_value", min_value=1)
            number = 1
        if number > self.maximum:
            if not self.clamp_high:
                self.fail("max_value", max_value=self.maximum)
            number = self.maximum
        return number


class PageQuery(serializers.Serializer):
    """`page` (1 to MAX_PAGE) and `limit` (1 to MAX_LIMIT, DEFAULT_LIMIT when absent).

    A subclass sets its endpoint's sizes and wording: INVALID_TEXT for a value that is
    not a whole number of at least 1 (DRF's texts when None); CLAMP_LOW reads a number
    below 1 as 1, CLAMP_LIMIT a limit above MAX_LIMIT as MAX_LIMIT, instead of refusing
    them."""

    DEFAULT_LIMIT = 50
    MAX_LIMIT = 100
    INVALID_TEXT: str | None = None
    CLAMP_LOW = False
    CLAMP_LIMIT = False

    def get_fields(self):
        fields = super().get_fields()
        rules = {"invalid": self.INVALID_TEXT, "clamp_low": self.CLAMP_LOW}
        fields["page"] = PageField(
            default=1,
            maximum=MAX_PAGE,
            error_messages={"max_value": "must be at most {max_value}"},
            **rules,
        )
        fields["limit"] = PageField(
            default=self.DEFAULT_LIMIT,
            maximum=self.MAX_LIMIT,
            clamp_high=self.CLAMP_LIMIT,
            **rules,
        )
        return fields
