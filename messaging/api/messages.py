from datetime import datetime

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.response import Response

from messaging import attachments, schedule, selectors, services
from messaging.addresses import InvalidRecipient, recipient_normalize
from messaging.documents import integration_ids, message_document
from messaging.models import Message
from tuco.api.fields import PaginationOutput, iso_utc
from tuco.api.pagination import PageQuery
from tuco.api.validation import StrictBooleanField, StrictTextField, validated
from tuco.api.views import WorkspaceAPIView
from tuco.errors import ServiceError
from tuco.ids import looks_like_id

MAX_PAGE_SIZE = 200


class MessageSettingsOutput(serializers.Serializer):
    timezone = serializers.CharField(allow_null=True)
    sendWindowStart = serializers.CharField(allow_null=True)  # noqa: N815
    sendWindowEnd = serializers.CharField(allow_null=True)  # noqa: N815
    allowedDaysOfWeek = serializers.ListField(child=serializers.IntegerField())  # noqa: N815


class MessageOutput(serializers.Serializer):
    """The message object of messages.mdx (plus subject, cancelReason, holdReason and
    attempts); built by messaging.documents.message_document."""

    _id = serializers.CharField()
    message = serializers.CharField()
    messageType = serializers.CharField()  # noqa: N815
    status = serializers.CharField()
    direction = serializers.CharField()
    fromLineId = serializers.CharField(allow_null=True)  # noqa: N815
    fromLinePhone = serializers.CharField(allow_null=True)  # noqa: N815
    fromLineEmail = serializers.CharField(allow_null=True)  # noqa: N815
    recipientPhone = serializers.CharField(allow_null=True)  # noqa: N815
    recipientEmail = serializers.CharField(allow_null=True)  # noqa: N815
    recipientName = serializers.CharField(allow_null=True)  # noqa: N815
    leadId = serializers.CharField(allow_null=True)  # noqa: N815
    workspaceId = serializers.CharField()  # noqa: N815
    createdByUserId = serializers.CharField(allow_null=True)  # noqa: N815
    campaignId = serializers.CharField(allow_null=True)  # noqa: N815
    stepIndex = serializers.IntegerField(allow_null=True)  # noqa: N815
    batchId = serializers.CharField(allow_null=True)  # noqa: N815
    scheduledDate = serializers.CharField(allow_null=True)  # noqa: N815
    settings = MessageSettingsOutput()
    sentAt = serializers.CharField(allow_null=True)  # noqa: N815
    deliveredAt = serializers.CharField(allow_null=True)  # noqa: N815
    readAt = serializers.CharField(allow_null=True)  # noqa: N815
    undelivered = serializers.BooleanField()
    undeliveredAt = serializers.CharField(allow_null=True)  # noqa: N815
    externalMessageId = serializers.CharField(allow_null=True)  # noqa: N815
    errorMessage = serializers.CharField(allow_null=True)  # noqa: N815
    checkedAddresses = serializers.ListField(child=serializers.CharField())  # noqa: N815
    sendFallbackSmsOnFailed = serializers.BooleanField()  # noqa: N815
    attachmentUrls = serializers.ListField(child=serializers.CharField())  # noqa: N815
    attachmentNames = serializers.ListField(child=serializers.CharField())  # noqa: N815
    ghlContactId = serializers.CharField(allow_null=True)  # noqa: N815
    ghlLocationId = serializers.CharField(allow_null=True)  # noqa: N815
    hsPortalId = serializers.CharField(allow_null=True)  # noqa: N815
    hsContactId = serializers.CharField(allow_null=True)  # noqa: N815
    subject = serializers.CharField(allow_null=True)
    cancelReason = serializers.CharField(allow_null=True)  # noqa: N815
    holdReason = serializers.CharField(  # noqa: N815
        allow_null=True,
        help_text="Why a waiting message is held back until scheduledDate (the frequency "
        "cap), or null",
    )
    attempts = serializers.IntegerField()
    createdAt = serializers.CharField()  # noqa: N815
    updatedAt = serializers.CharField()  # noqa: N815


class SentMessageOutput(serializers.Serializer):
    """The message object `POST /api/messages` answers: MessageOutput with its unset
    fields left out rather than null, as the published examples show it."""

    def get_fields(self):
        fields = {}
        for name, field in MessageOutput().get_fields().items():
            if field.allow_null:
                kwargs = {**field._kwargs, "allow_null": False, "required": False}
                field = field.__class__(*field._args, **kwargs)
            fields[name] = field
        return fields


# The published texts of openapi.json's 400 examples for POST /api/messages.
BODY_NOT_AN_OBJECT = "Request body must be a JSON object"
BODY_NOT_JSON = "Invalid request body (JSON required)"
ATTACHMENTS_NOT_A_LIST = "attachmentUrls must be an array"
TOO_MANY_ATTACHMENTS = f"Maximum {attachments.MAX_ATTACHMENTS} attachments per message"
BAD_SCHEDULED_DATE = "Invalid scheduledDate format"
BAD_TIME = (
    "Invalid time format. sendWindowStart and sendWindowEnd must be in HH:mm format "
    "(e.g., 09:00, 17:00)"
)
BAD_TIMEZONE = (
    "Invalid timezone or time window settings. Please check your timezone and time format."
)


class MessageTypeField(serializers.ChoiceField):
    """`imessage` when absent or empty; anything else unknown is the published 400."""

    def __init__(self, **kwargs):
        super().__init__(Message.Type.choices, required=False, allow_null=True, **kwargs)
        self.default = Message.Type.IMESSAGE

    def validate_empty_values(self, data):
        if data in (None, ""):
            return True, Message.Type.IMESSAGE
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        if not data:
            return Message.Type.IMESSAGE
        if not isinstance(data, str) or data not in Message.Type.values:
            raise ServiceError(services.BAD_TYPE)
        return data


class RecipientField(StrictTextField):
    """A phone number (E.164, read in the default country without a country code) or
    an email address (lowercased), normalized; "" when not given."""

    def __init__(self, kind: str, **kwargs):
        self.kind = kind
        super().__init__(numbers=kind == "phone", **kwargs)

    def to_internal_value(self, data):
        if not super().to_internal_value(data):
            return ""
        try:
            return recipient_normalize(data, self.kind)
        except InvalidRecipient as exc:
            raise serializers.ValidationError(str(exc)) from None


class TimeOfDayField(StrictTextField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value:
            try:
                schedule.parse_hhmm(value)
            except ValueError:
                raise ServiceError(BAD_TIME) from None
        return value


class OptionalListField(serializers.ListField):
    """A list that may be left out or null: both mean an empty one."""

    def __init__(self, **kwargs):
        super().__init__(required=False, allow_null=True, default=list, **kwargs)

    def validate_empty_values(self, data):
        if data is None:
            return True, []
        return super().validate_empty_values(data)


class DaysOfWeekField(OptionalListField):
    default_error_messages = {
        "invalid": "must be a list of day numbers from 0 (Sunday) to 6 (Saturday)"
    }

    def __init__(self, **kwargs):
        super().__init__(child=serializers.IntegerField(min_value=0, max_value=6), **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, list) or any(
            isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6 for d in data
        ):
            self.fail("invalid")
        return data


class ScheduledDateField(StrictTextField):
    """An ISO 8601 date-time; a naive one is read in the message's time zone."""

    def __init__(self, **kwargs):
        super().__init__(default=None, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not value:
            return None
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ServiceError(BAD_SCHEDULED_DATE) from None


class AttachmentUrlsField(OptionalListField):
    """A list of at most two attachment URLs; the published texts when it is not a
    list or too long."""

    def __init__(self, **kwargs):
        super().__init__(
            child=serializers.URLField(), max_length=attachments.MAX_ATTACHMENTS, **kwargs
        )

    def to_internal_value(self, data):
        if not data:
            return []
        if not isinstance(data, list):
            raise ServiceError(ATTACHMENTS_NOT_A_LIST)
        if len(data) > attachments.MAX_ATTACHMENTS:
            raise ServiceError(TOO_MANY_ATTACHMENTS)
        try:
            return [attachments.validate_url(url) for url in data]
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class SendInput(serializers.Serializer):
    """The body of `POST /api/messages`, validated and normalized into
    `messaging.services.message_submit`'s keyword arguments. The checks that need
    the workspace's data (line, lead, Twilio, do-not-contact) are the service's."""

    default_error_messages = {"invalid": BODY_NOT_AN_OBJECT}

    messageType = MessageTypeField()  # noqa: N815
    message = StrictTextField(trim_whitespace=False)
    attachmentUrls = AttachmentUrlsField()  # noqa: N815
    attachmentNames = OptionalListField(  # noqa: N815
        child=StrictTextField(max_length=200, allow_null=False),
        max_length=attachments.MAX_ATTACHMENTS,
    )
    recipientPhone = RecipientField("phone")  # noqa: N815
    recipientEmail = RecipientField("email")  # noqa: N815
    recipientName = StrictTextField(max_length=200)  # noqa: N815
    leadId = StrictTextField()  # noqa: N815
    fromLineId = StrictTextField()  # noqa: N815
    altPhone1 = RecipientField("phone")  # noqa: N815
    altPhone2 = RecipientField("phone")  # noqa: N815
    altPhone3 = RecipientField("phone")  # noqa: N815
    altEmail1 = RecipientField("email")  # noqa: N815
    altEmail2 = RecipientField("email")  # noqa: N815
    altEmail3 = RecipientField("email")  # noqa: N815
    scheduledDate = ScheduledDateField()  # noqa: N815
    timezone = StrictTextField()
    sendWindowStart = TimeOfDayField()  # noqa: N815
    sendWindowEnd = TimeOfDayField()  # noqa: N815
    allowedDaysOfWeek = DaysOfWeekField()  # noqa: N815
    sendFallbackSmsOnFailed = StrictBooleanField()  # noqa: N815
    batchId = StrictTextField(numbers=True, max_length=100)  # noqa: N815
    subject = StrictTextField(max_length=300)
    ghlContactId = StrictTextField(numbers=True, max_length=100)  # noqa: N815
    ghlLocationId = StrictTextField(numbers=True, max_length=100)  # noqa: N815
    hsContactId = StrictTextField(numbers=True, max_length=100)  # noqa: N815
    hsPortalId = StrictTextField(numbers=True, max_length=100)  # noqa: N815

    def validate_timezone(self, value: str) -> str:
        if value:
            try:
                schedule.get_zone(value)
            except ValueError:
                raise ServiceError(BAD_TIMEZONE) from None
        return value

    def validate(self, attrs):
        if not attrs["message"].strip() and not attrs["attachmentUrls"]:
            raise ServiceError(services.EMPTY_MESSAGE)
        if len(attrs["attachmentNames"]) > len(attrs["attachmentUrls"]):
            raise serializers.ValidationError(
                {"attachmentNames": "must not have more names than attachmentUrls has URLs"}
            )
        if bool(attrs["sendWindowStart"]) != bool(attrs["sendWindowEnd"]):
            raise serializers.ValidationError(
                "sendWindowStart and sendWindowEnd must be given together"
            )
        if attrs["messageType"] == Message.Type.EMAIL and attrs["attachmentUrls"]:
            raise serializers.ValidationError(
                {"attachmentUrls": "attachments are only sent by iMessage"}
            )
        # The service's keyword arguments.
        return {
            "message_type": attrs["messageType"],
            "body": attrs["message"],
            "attachment_urls": attrs["attachmentUrls"],
            "attachment_names": attrs["attachmentNames"],
            "recipient_phone": attrs["recipientPhone"],
            "recipient_email": attrs["recipientEmail"],
            "recipient_name": attrs["recipientName"],
            "alt_phones": [attrs[f"altPhone{n}"] for n in (1, 2, 3)],
            "alt_emails": [attrs[f"altEmail{n}"] for n in (1, 2, 3)],
            "lead_id": attrs["leadId"],
            "line_id": attrs["fromLineId"],
            "scheduled_date": attrs["scheduledDate"],
            "timezone_name": attrs["timezone"],
            "send_window_start": attrs["sendWindowStart"],
            "send_window_end": attrs["sendWindowEnd"],
            "allowed_days": attrs["allowedDaysOfWeek"],
            "send_fallback_sms_on_failed": attrs["sendFallbackSmsOnFailed"],
            "batch_id": attrs["batchId"],
            "subject": attrs["subject"],
            "crm_ids": {
                "ghl_contact_id": attrs["ghlContactId"],
                "ghl_location_id": attrs["ghlLocationId"],
                "hs_contact_id": attrs["hsContactId"],
                "hs_portal_id": attrs["hsPortalId"],
            },
        }


class SendOutput(serializers.Serializer):
    """send-message.mdx's answer: 201, or 200 with `duplicateOnly` when the recipient
    matched a lead the workspace already had."""

    success = serializers.BooleanField()
    status = serializers.CharField()
    reason = serializers.CharField()
    scheduledDate = serializers.CharField(required=False)  # noqa: N815
    message = SentMessageOutput()
    leadId = serializers.CharField()  # noqa: N815
    ghlContactId = serializers.CharField(allow_null=True)  # noqa: N815
    ghlLocationId = serializers.CharField(allow_null=True)  # noqa: N815
    hsPortalId = serializers.CharField(allow_null=True)  # noqa: N815
    hsContactId = serializers.CharField(allow_null=True)  # noqa: N815
    duplicateOnly = serializers.BooleanField(required=False)  # noqa: N815
    existingLeadIds = serializers.ListField(  # noqa: N815
        child=serializers.CharField(), required=False
    )
    leadIds = serializers.ListField(child=serializers.CharField(), required=False)  # noqa: N815
    duplicateMessage = serializers.CharField(required=False)  # noqa: N815


DUPLICATE_MESSAGE = "Lead was duplicate; message sent using existing lead."


def send_reason(message: Message) -> str:
    """Why the message has the status it answers with (nothing is sent in the request)."""
    if message.status == Message.Status.SCHEDULED:
        return f"Scheduled: the message is sent at {iso_utc(message.scheduled_date)}"
    return "Queued: a worker sends it once the time window, line limits and gaps allow"


class MessageListOutput(serializers.Serializer):
    messages = MessageOutput(many=True)
    pagination = PaginationOutput()


def _filter_field():
    return serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, default=""
    )


class MessageListQuery(PageQuery):
    MAX_LIMIT = MAX_PAGE_SIZE
    INVALID_TEXT = "must be a positive whole number"
    CLAMP_LIMIT = True

    status = _filter_field()
    leadId = _filter_field()  # noqa: N815
    fromLineId = _filter_field()  # noqa: N815
    campaignId = _filter_field()  # noqa: N815
    batchId = _filter_field()  # noqa: N815


class MessagesApi(WorkspaceAPIView):
    """`/api/messages`: send one message (POST), list messages (GET)."""

    idempotent_post = True

    def get_rate_limit_group(self, request) -> str:
        return "send" if request.method == "POST" else "default"

    def acting_user_id(self) -> int | None:
        """The signed-in user, or the user who created the API key used."""
        user = self.request.user
        if getattr(user, "is_authenticated", False):
            return user.pk
        return getattr(self.request.auth, "created_by_id", None)

    def handle_exception(self, exc):
        # A body that is not JSON gets the published text, wherever it is read first
        # (the idempotency check reads it before the operation does).
        if isinstance(exc, ParseError):
            exc = ServiceError(BODY_NOT_JSON)
        return super().handle_exception(exc)

    @extend_schema(
        request=SendInput,
        responses={201: SendOutput, 200: SendOutput},
        summary="Send an iMessage, SMS or email (queued; the worker sends it)",
    )
    def post(self, request):
        data = validated(SendInput, request.data)
        submitted = services.message_submit(
            workspace=self.workspace, created_by_id=self.acting_user_id(), **data
        )
        message = submitted.message
        # Unset fields are left out, as the published examples show them (the
        # published schema types them as strings, never null).
        answer = {
            "success": True,
            "status": message.status,
            "reason": send_reason(message),
            "message": {k: v for k, v in message_document(message).items() if v is not None},
            "leadId": submitted.lead_id,
            **integration_ids(message),
        }
        if message.scheduled_date is not None:
            answer["scheduledDate"] = iso_utc(message.scheduled_date)
        if submitted.lead_matched:
            answer.update(
                duplicateOnly=True,
                existingLeadIds=[submitted.lead_id],
                leadIds=[submitted.lead_id],
                duplicateMessage=DUPLICATE_MESSAGE,
            )
            return Response(answer, status=status.HTTP_200_OK)
        return Response(answer, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[MessageListQuery],
        responses=MessageListOutput,
        summary="List messages, newest first",
    )
    def get(self, request):
        query = validated(MessageListQuery, request.query_params)
        page, limit = query["page"], query["limit"]
        rows = selectors.message_list(
            workspace=self.workspace,
            status=query["status"],
            lead_id=query["leadId"],
            line_id=query["fromLineId"],
            campaign_id=query["campaignId"],
            batch_id=query["batchId"],
        )
        total = rows.count()
        items = rows[(page - 1) * limit : page * limit]
        return Response(
            {
                "messages": [message_document(m) for m in items],
                "pagination": {
                    "page": page,
                    "limit": limit,
                    "totalCount": total,
                    "totalPages": (total + limit - 1) // limit,
                },
            }
        )


class MessageDetailApi(WorkspaceAPIView):
    @extend_schema(responses=MessageOutput, summary="One message")
    def get(self, request, message_id):
        message = selectors.message_get(workspace=self.workspace, message_id=message_id)
        return Response(message_document(message))


class CancelForLeadApi(WorkspaceAPIView):
    class InputSerializer(serializers.Serializer):
        """At least one of the three (cancel-for-lead.mdx's texts, as they are)."""

        leadId = StrictTextField()  # noqa: N815
        recipientPhone = StrictTextField(numbers=True)  # noqa: N815
        recipientEmail = StrictTextField()  # noqa: N815

        def validate_leadId(self, value: str) -> str:  # noqa: N802
            if value and not looks_like_id(value):
                raise ServiceError("Invalid leadId")
            return value

        def validate(self, attrs):
            if not any(attrs[name] for name in ("leadId", "recipientPhone", "recipientEmail")):
                raise ServiceError("Either leadId, recipientPhone, or recipientEmail is required")
            return attrs

    class OutputSerializer(serializers.Serializer):
        success = serializers.BooleanField()
        cancelledCount = serializers.IntegerField()  # noqa: N815
        jobsRemovedFromQueue = serializers.IntegerField()  # noqa: N815
        leadId = serializers.CharField(allow_null=True)  # noqa: N815
        messageIds = serializers.ListField(child=serializers.CharField())  # noqa: N815

    @extend_schema(
        request=InputSerializer,
        responses=OutputSerializer,
        summary="Cancel a lead's pending and scheduled messages",
    )
    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        ids, lead_id = services.message_cancel_for_lead(
            workspace=self.workspace,
            lead_id=data["leadId"] or None,
            phone=str(data["recipientPhone"]),
            email=data["recipientEmail"],
        )
        return Response(
            {
                "success": True,
                "cancelledCount": len(ids),
                # The worker's queue is the outbox itself: it only ever claims waiting
                # rows, so every message cancelled here has left the queue (a message
                # already sending is not cancelled at all).
                "jobsRemovedFromQueue": len(ids),
                "leadId": lead_id,
                "messageIds": ids,
            }
        )
