from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from leads.models import Lead
from leads.selectors import attach_tags
from tuco.api.fields import IsoDateTimeField


class StrictCharField(serializers.CharField):
    """A string and only a string: numbers and booleans are a type error, not coerced."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _text(max_length=None, **kwargs):
    # `null` stays None: the service reads it as empty.
    return StrictCharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        trim_whitespace=False,
        max_length=max_length,
        **kwargs,
    )


class LeadInput(serializers.Serializer):
    """The writable fields of a lead, validated to model field names (lead_update's
    keyword arguments); phones and emails are normalized by the service."""

    firstName = _text(200, source="first_name")  # noqa: N815
    lastName = _text(200, source="last_name")  # noqa: N815
    email = _text(254)
    phone = _text(64)
    altPhone1 = _text(64, source="alt_phone1")  # noqa: N815
    altPhone2 = _text(64, source="alt_phone2")  # noqa: N815
    altPhone3 = _text(64, source="alt_phone3")  # noqa: N815
    altEmail1 = _text(254, source="alt_email1")  # noqa: N815
    altEmail2 = _text(254, source="alt_email2")  # noqa: N815
    altEmail3 = _text(254, source="alt_email3")  # noqa: N815
    companyName = _text(200, source="company_name")  # noqa: N815
    jobTitle = _text(200, source="job_title")  # noqa: N815
    notes = _text()
    customFields = serializers.DictField(  # noqa: N815
        required=False, allow_null=True, source="custom_fields"
    )
    source = _text(100)
    optedOut = serializers.BooleanField(required=False, source="opted_out")  # noqa: N815
    tags = serializers.ListField(
        child=StrictCharField(max_length=100),
        required=False,
        allow_null=True,
        max_length=50,
        help_text="Tag names. On create they are added; on update they replace the lead's tags",
    )


@extend_schema_field(LeadInput(many=True))
class LeadRowsField(serializers.ListField):
    """Rows are checked field by field by the import service (fast for 10,000 rows),
    which applies the same rules as LeadInput and names the row in its errors."""

    child = serializers.DictField()


class OptionalText(serializers.CharField):
    """Text that is `null` when empty, as the published API shows unset fields."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return value or None


class LeadOutput(serializers.Serializer):
    """A lead as the published API shows it (`listId`: the first list it joined), plus
    ours: the alternate addresses, availability and all its lists (`listIds`).
    Needs `list_ids` on the lead (selectors.attach_list_ids)."""

    _id = serializers.CharField(source="pk")
    firstName = OptionalText(source="first_name")  # noqa: N815
    lastName = OptionalText(source="last_name")  # noqa: N815
    email = OptionalText()
    phone = OptionalText()
    altPhone1 = OptionalText(source="alt_phone1")  # noqa: N815
    altPhone2 = OptionalText(source="alt_phone2")  # noqa: N815
    altPhone3 = OptionalText(source="alt_phone3")  # noqa: N815
    altEmail1 = OptionalText(source="alt_email1")  # noqa: N815
    altEmail2 = OptionalText(source="alt_email2")  # noqa: N815
    altEmail3 = OptionalText(source="alt_email3")  # noqa: N815
    companyName = OptionalText(source="company_name")  # noqa: N815
    jobTitle = OptionalText(source="job_title")  # noqa: N815
    notes = OptionalText()
    customFields = serializers.DictField(source="custom_fields")  # noqa: N815
    listId = serializers.SerializerMethodField()  # noqa: N815
    workspaceId = serializers.CharField(source="workspace_id")  # noqa: N815
    source = OptionalText()
    contactOwnerEmail = OptionalText(source="contact_owner_email")  # noqa: N815
    availabilityStatus = serializers.ChoiceField(  # noqa: N815
        source="availability_status", choices=Lead.Availability.values, allow_null=True
    )
    availabilityCheckedAt = IsoDateTimeField(source="availability_checked_at", allow_null=True)  # noqa: N815
    # The address that answered the last check (the available one, else the last tried).
    availabilityAddress = OptionalText(source="availability_address")  # noqa: N815
    optedOut = serializers.BooleanField(source="opted_out")  # noqa: N815
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815
    updatedAt = IsoDateTimeField(source="updated_at")  # noqa: N815
    listIds = serializers.ListField(child=serializers.CharField(), source="list_ids")  # noqa: N815
    tags = serializers.SerializerMethodField()

    def get_tags(self, lead) -> list[str]:
        if not hasattr(lead, "tag_names"):
            attach_tags([lead])
        return lead.tag_names

    def get_listId(self, lead) -> str | None:  # noqa: N802
        return lead.list_ids[0] if lead.list_ids else None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["availabilityStatus"] = instance.availability_status or None
        return data


class LeadListOutput(serializers.Serializer):
    """Needs `lead_count` on the list (selectors.lead_lists_with_counts)."""

    _id = serializers.CharField(source="pk")
    name = serializers.CharField()
    description = OptionalText()
    workspaceId = serializers.CharField(source="workspace_id")  # noqa: N815
    leadCount = serializers.IntegerField(source="lead_count")  # noqa: N815
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815
    updatedAt = IsoDateTimeField(source="updated_at")  # noqa: N815
