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


CRM_ID_FIELDS = ("ghlContactId", "ghlLocationId", "hsPortalId", "hsContactId")


def crm_ids_given(*sources) -> dict:
    """The CRM ids (GoHighLevel, HubSpot) a request gave, for answers that echo them:
    each from the first source (a dict, e.g. the lead row, then the body) that has it
    as a non-empty string or a number; null when none does."""
    found = {}
    for name in CRM_ID_FIELDS:
        found[name] = None
        for source in sources:
            value = source.get(name) if isinstance(source, dict) else None
            if isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                value = str(value)
            if isinstance(value, str) and value.strip():
                found[name] = value.strip()
                break
    return found
