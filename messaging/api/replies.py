from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from messaging.inbound import replies_list
from tuco.api.pagination import PageQuery
from tuco.api.views import WorkspaceAPIView

MAX_PAGE_SIZE = 100


class RecentReplyOutput(serializers.Serializer):
    messageId = serializers.CharField()  # noqa: N815
    message = serializers.CharField()
    receivedAtUtc = serializers.CharField()  # noqa: N815


class ParentMessageOutput(serializers.Serializer):
    messageId = serializers.CharField()  # noqa: N815
    message = serializers.CharField()
    sentAtUtc = serializers.CharField()  # noqa: N815
    batchId = serializers.CharField(allow_null=True)  # noqa: N815
    stepIndex = serializers.IntegerField(allow_null=True)  # noqa: N815


class ReplyOutput(serializers.Serializer):
    leadId = serializers.CharField()  # noqa: N815
    messageId = serializers.CharField()  # noqa: N815
    message = serializers.CharField()
    respondedAtUtc = serializers.CharField()  # noqa: N815
    recipientPhone = serializers.CharField(allow_null=True)  # noqa: N815
    recipientEmail = serializers.CharField(allow_null=True)  # noqa: N815
    name = serializers.CharField(allow_null=True)
    recentReplies = RecentReplyOutput(many=True)  # noqa: N815
    parentMessages = ParentMessageOutput(many=True)  # noqa: N815


class RepliesApi(WorkspaceAPIView):
    """`GET /api/replies`: leads who replied, latest reply first."""

    rate_limit_group = "replies"

    class QueryInput(PageQuery):
        MAX_LIMIT = MAX_PAGE_SIZE
        leadId = serializers.CharField(required=False, allow_blank=True)  # noqa: N815
        campaignId = serializers.CharField(required=False, allow_blank=True)  # noqa: N815
        recipientPhone = serializers.CharField(required=False, allow_blank=True)  # noqa: N815
        recipientEmail = serializers.CharField(required=False, allow_blank=True)  # noqa: N815

    class OutputSerializer(serializers.Serializer):
        replies = ReplyOutput(many=True)
        total = serializers.IntegerField()
        page = serializers.IntegerField()
        limit = serializers.IntegerField()
        totalPages = serializers.IntegerField()  # noqa: N815

    @extend_schema(
        summary="Replies received, one item per lead",
        parameters=[QueryInput],
        responses=OutputSerializer,
    )
    def get(self, request):
        params = self.QueryInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        # An empty filter is treated as absent, as the published API does.
        result = replies_list(
            workspace=self.workspace,
            lead_id=data.get("leadId") or None,
            campaign_id=data.get("campaignId") or None,
            recipient_phone=data.get("recipientPhone") or None,
            recipient_email=data.get("recipientEmail") or None,
            page=data["page"],
            limit=data["limit"],
        )
        return Response(result)
