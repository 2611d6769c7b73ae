from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from messaging import webhooks
from messaging.models import WebhookDelivery
from messaging.models.webhooks import WEBHOOK_EVENTS
from tuco.api.auth import CanManageWorkspace
from tuco.api.fields import IsoDateTimeField
from tuco.api.pagination import PageQuery
from tuco.api.views import WorkspaceAPIView

MAX_PAGE_SIZE = 100


class EndpointOutput(serializers.Serializer):
    _id = serializers.CharField(source="pk")
    url = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    isActive = serializers.BooleanField(source="is_active")  # noqa: N815
    disabledReason = serializers.CharField(source="disabled_reason")  # noqa: N815
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815
    updatedAt = IsoDateTimeField(source="updated_at")  # noqa: N815


class EndpointWithSecretOutput(EndpointOutput):
    secret = serializers.CharField()


class AttemptOutput(serializers.Serializer):
    attemptedAt = IsoDateTimeField(source="attempted_at")  # noqa: N815
    statusCode = serializers.IntegerField(source="status_code", allow_null=True)  # noqa: N815
    error = serializers.CharField()
    durationMs = serializers.IntegerField(source="duration_ms")  # noqa: N815


class DeliveryOutput(serializers.Serializer):
    _id = serializers.CharField(source="pk")
    event = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    nextAttemptAt = serializers.SerializerMethodField()  # noqa: N815
    lastStatusCode = serializers.IntegerField(  # noqa: N815
        source="last_status_code", allow_null=True
    )
    lastError = serializers.CharField(source="last_error")  # noqa: N815
    deliveredAt = IsoDateTimeField(source="delivered_at", allow_null=True)  # noqa: N815
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815
    payload = serializers.JSONField()
    attemptLog = AttemptOutput(source="attempt_log.all", many=True)  # noqa: N815

    def get_nextAttemptAt(self, delivery) -> str | None:  # noqa: N802
        if delivery.status != WebhookDelivery.Status.PENDING:
            return None
        return IsoDateTimeField().to_representation(delivery.next_attempt_at)


class EndpointInput(serializers.Serializer):
    url = serializers.URLField(max_length=2000)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_EVENTS), allow_empty=False
    )
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class EndpointPatchInput(EndpointInput):
    isActive = serializers.BooleanField(required=False)  # noqa: N815


class WebhookListApi(WorkspaceAPIView):
    """`/api/webhooks`: list and create endpoints. The secret is shown only at creation."""

    permission_classes = [CanManageWorkspace]

    @extend_schema(
        summary="Webhook endpoints",
        responses=inline_serializer("WebhookList", {"webhooks": EndpointOutput(many=True)}),
    )
    def get(self, request):
        rows = webhooks.WebhookEndpoint.objects.filter(workspace=self.workspace).order_by(
            "created_at", "id"
        )
        return Response({"webhooks": EndpointOutput(rows, many=True).data})

    @extend_schema(
        summary="Create a webhook endpoint",
        request=EndpointInput,
        responses={201: EndpointWithSecretOutput},
    )
    def post(self, request):
        body = EndpointInput(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint = webhooks.webhook_endpoint_create(
            workspace=self.workspace,
            url=body.validated_data["url"],
            events=body.validated_data["events"],
            name=body.validated_data["name"],
            description=body.validated_data.get("description", ""),
        )
        return Response(EndpointWithSecretOutput(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookDetailApi(WorkspaceAPIView):
    permission_classes = [CanManageWorkspace]

    @extend_schema(summary="One webhook endpoint", responses=EndpointOutput)
    def get(self, request, endpoint_id):
        endpoint = webhooks.webhook_endpoint_get(workspace=self.workspace, endpoint_id=endpoint_id)
        return Response(EndpointOutput(endpoint).data)

    @extend_schema(
        summary="Change a webhook endpoint",
        request=EndpointPatchInput(partial=True),
        responses=EndpointOutput,
    )
    def patch(self, request, endpoint_id):
        body = EndpointPatchInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        endpoint = webhooks.webhook_endpoint_update(
            workspace=self.workspace,
            endpoint_id=endpoint_id,
            url=values.get("url"),
            events=values.get("events"),
            name=values.get("name"),
            description=values.get("description"),
            is_active=values.get("isActive"),
        )
        return Response(EndpointOutput(endpoint).data)

    @extend_schema(
        summary="Delete a webhook endpoint",
        responses={
            200: inline_serializer("WebhookDeleted", {"success": serializers.BooleanField()})
        },
    )
    def delete(self, request, endpoint_id):
        webhooks.webhook_endpoint_delete(workspace=self.workspace, endpoint_id=endpoint_id)
        return Response({"success": True})


class WebhookHealthCheckApi(WorkspaceAPIView):
    """Send a signed `webhook.test` event now and report the answer."""

    permission_classes = [CanManageWorkspace]

    @extend_schema(
        summary="Send a test event",
        request=None,
        responses=inline_serializer(
            "WebhookHealthCheck",
            {
                "success": serializers.BooleanField(),
                "deliveryId": serializers.CharField(),
                "statusCode": serializers.IntegerField(allow_null=True),
                "error": serializers.CharField(allow_null=True),
                "durationMs": serializers.IntegerField(),
            },
        ),
    )
    def post(self, request, endpoint_id):
        return Response(
            webhooks.webhook_endpoint_test(workspace=self.workspace, endpoint_id=endpoint_id)
        )


class WebhookDeliveriesApi(WorkspaceAPIView):
    """Every delivery of an endpoint, newest first, with each attempt."""

    permission_classes = [CanManageWorkspace]

    class QueryInput(PageQuery):
        MAX_LIMIT = MAX_PAGE_SIZE
        status = serializers.ChoiceField(choices=WebhookDelivery.Status.values, required=False)

    class OutputSerializer(serializers.Serializer):
        deliveries = DeliveryOutput(many=True)
        total = serializers.IntegerField()
        page = serializers.IntegerField()
        limit = serializers.IntegerField()
        totalPages = serializers.IntegerField()  # noqa: N815

    @extend_schema(
        summary="Deliveries of a webhook endpoint",
        parameters=[QueryInput],
        responses=OutputSerializer,
    )
    def get(self, request, endpoint_id):
        endpoint = webhooks.webhook_endpoint_get(workspace=self.workspace, endpoint_id=endpoint_id)
        params = self.QueryInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        page, limit = params.validated_data["page"], params.validated_data["limit"]
        rows = WebhookDelivery.objects.filter(endpoint=endpoint)
        if params.validated_data.get("status"):
            rows = rows.filter(status=params.validated_data["status"])
        total = rows.count()
        page_rows = rows.order_by("-created_at", "-id").prefetch_related("attempt_log")[
            (page - 1) * limit : page * limit
        ]
        return Response(
            {
                "deliveries": DeliveryOutput(page_rows, many=True).data,
                "total": total,
                "page": page,
                "limit": limit,
                "totalPages": -(-total // limit),
            }
        )
