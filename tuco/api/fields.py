from datetime import UTC

from rest_framework import serializers


def iso_utc(value) -> str | None:
    """ISO 8601 in UTC with a Z, the one timestamp format of the API."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class IsoDateTimeField(serializers.DateTimeField):
    def to_representation(self, value):
        return iso_utc(value)


class PaginationOutput(serializers.Serializer):
    """The `pagination` object of paged list endpoints."""

    page = serializers.IntegerField()
    limit = serializers.IntegerField()
    totalCount = serializers.IntegerField()  # noqa: N815
    totalPages = serializers.IntegerField()  # noqa: N815
