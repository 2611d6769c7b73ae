from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from messaging import unibox
from tuco.api.pagination import PageQuery
from tuco.api.views import WorkspaceAPIView
from tuco.errors import ValidationFailed

MAX_PAGE_SIZE = 100


class LeadSummaryOutput(serializers.Serializer):
    _id = serializers.CharField()
    firstName = serializers.CharField()  # noqa: N815
    lastName = serializers.CharField()  # noqa: N815
    email = serializers.CharField()
    phone = serializers.CharField()
    companyName = serializers.CharField()  # noqa: N815
    optedOut = serializers.BooleanField()  # noqa: N815
    availabilityStatus = serializers.CharField(allow_null=True)  # noqa: N815


class ConversationOutput(serializers.Serializer):
    _id = serializers.CharField()
    recipient = serializers.CharField()
    recipientPhone = serializers.CharField(allow_null=True)  # noqa: N815
    recipientEmail = serializers.CharField(allow_null=True)  # noqa: N815
    unreadCount = serializers.IntegerField()  # noqa: N815
    lastMessage = serializers.CharField(allow_null=True)  # noqa: N815
    lastMessageAt = serializers.CharField(allow_null=True)  # noqa: N815
    lastInboundAt = serializers.CharField(allow_null=True)  # noqa: N815
    leadId = serializers.CharField(allow_null=True)  # noqa: N815
    lead = LeadSummaryOutput(allow_null=True)
    lineId = serializers.CharField(allow_null=True)  # noqa: N815
    createdAt = serializers.CharField()  # noqa: N815


class ThreadItemOutput(serializers.Serializer):
    _id = serializers.CharField()
    direction = serializers.ChoiceField(choices=["outbound", "inbound"])
    message = serializers.CharField()
    messageType = serializers.CharField()  # noqa: N815
    status = serializers.CharField()
    lineId = serializers.CharField(allow_null=True)  # noqa: N815
    leadId = serializers.CharField(allow_null=True)  # noqa: N815
    at = serializers.CharField()
    isRead = serializers.BooleanField()  # noqa: N815


class ConversationListApi(WorkspaceAPIView):
    """`GET /api/unibox/conversations`: one thread per recipient, latest first."""

    class QueryInput(PageQuery):
        MAX_LIMIT = MAX_PAGE_SIZE
        unread = serializers.BooleanField(required=False, default=False)

    class OutputSerializer(serializers.Serializer):
        conversations = ConversationOutput(many=True)
        total = serializers.IntegerField()
        page = serializers.IntegerField()
        limit = serializers.IntegerField()
        totalPages = serializers.IntegerField()  # noqa: N815

    @extend_schema(summary="Conversations", parameters=[QueryInput], responses=OutputSerializer)
    def get(self, request):
        params = self.QueryInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        page, limit = params.validated_data["page"], params.validated_data["limit"]
        rows = unibox.conversation_list(
            workspace=self.workspace, unread_only=params.validated_data["unread"]
        )
        total = rows.count()
        page_rows = rows[(page - 1) * limit : page * limit]
        return Response(
            {
                "conversations": [unibox.conversation_item(c) for c in page_rows],
                "total": total,
                "page": page,
                "limit": limit,
                "totalPages": -(-total // limit),
            }
        )


class ConversationMessagesApi(WorkspaceAPIView):
    """`GET /api/unibox/conversations/{id}/messages`: the thread; marks its replies read."""

    class OutputSerializer(serializers.Serializer):
        conversation = ConversationOutput()
        messages = ThreadItemOutput(many=True)

    @extend_schema(summary="One conversation's messages", responses=OutputSerializer)
    def get(self, request, conversation_id):
        conversation = unibox.conversation_resolve(
            workspace=self.workspace, conversation_id=conversation_id
        )
        messages = unibox.conversation_thread(workspace=self.workspace, conversation=conversation)
        conversation.refresh_from_db()
        return Response(
            {"conversation": unibox.conversation_item(conversation), "messages": messages}
        )


class SendReplyApi(WorkspaceAPIView):
    """`POST /api/unibox/send-reply`: answer from the line that last talked to them."""

    rate_limit_group = "unibox_reply"
    idempotent_post = True

    class InputSerializer(serializers.Serializer):
        """A text that is not only whitespace, and a conversation or a lead. Those two
        errors are raised as they are: their bodies carry no `details`."""

        conversationId = serializers.CharField(required=False, allow_blank=True)  # noqa: N815
        leadId = serializers.CharField(required=False, allow_blank=True)  # noqa: N815
        message = serializers.CharField(max_length=20_000, trim_whitespace=False)

        def validate_message(self, value: str) -> str:
            if not value.strip():
                raise ValidationFailed("This field may not be blank.", field="message")
            return value

        def validate(self, attrs):
            if not (attrs.get("conversationId") or attrs.get("leadId")):
                raise ValidationFailed("Either conversationId or leadId is required")
            return attrs

    @extend_schema(
        summary="Reply in a conversation",
        request=InputSerializer,
        responses=inline_serializer(
            "SendReplyOutput",
            {"success": serializers.BooleanField(), "messageId": serializers.CharField()},
        ),
    )
    def post(self, request):
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        message = unibox.unibox_send_reply(
            workspace=self.workspace,
            text=body.validated_data["message"],
            conversation_id=body.validated_data.get("conversationId") or None,
            lead_id=body.validated_data.get("leadId") or None,
        )
        return Response({"success": True, "messageId": message.pk})
