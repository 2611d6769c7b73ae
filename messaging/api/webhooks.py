from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.fields import empty
from rest_framework.response import Response

from messaging import webhooks
from messaging.models import WebhookDelivery
from messaging.models.webhooks import WEBHOOK_EVENTS
from tuco.api.auth import CanManageWorkspace
from tuco.api.fields import IsoDateTimeField
from tuco.api.pagination import PageQuery
from tuco.api.validation import StrictBooleanField, StrictTextField, validated
from tuco.api.views import WorkspaceAPIView

MAX_PAGE_SIZE = 100


class EndpointOutput(serializers.Serializer):
    """The webhook object of get-webhook.mdx (plus ours: disabledReason)."""

    id = serializers.CharField(source="pk")
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    name = serializers.CharField()
    description = serializers.SerializerMethodField()
    isActive = serializers.BooleanField(source="is_active")  # noqa: N815
    lastTriggeredAt = IsoDateTimeField(source="last_triggered_at", allow_null=True)  # noqa: N815
    lastSuccessAt = IsoDateTimeField(source="last_success_at", allow_null=True)  # noqa: N815
    lastFailureAt = IsoDateTimeField(source="last_failure_at", allow_null=True)  # noqa: N815
    failureCount = serializers.IntegerField(source="failure_count")  # noqa: N815
    disabledReason = serializers.CharField(source="disabled_reason")  # noqa: N815
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815
    updatedAt = IsoDateTimeField(source="updated_at")  # noqa: N815

    def get_description(self, endpoint) -> str | None:
        return endpoint.description or None


class EndpointCreatedOutput(serializers.Serializer):
    """create-webhook.mdx's answer: the secret, shown this once, and a reminder."""

    id = serializers.CharField(source="pk")
    secret = serializers.CharField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    name = serializers.CharField()
    description = serializers.SerializerMethodField()
    isActive = serializers.BooleanField(source="is_active")  # noqa: N815
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815
    warning = serializers.SerializerMethodField()

    def get_description(self, endpoint) -> str | None:
        return endpoint.description or None

    def get_warning(self, endpoint) -> str:
        return SECRET_WARNING


SECRET_WARNING = "Save this secret now. You will not be able to see it again."


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


class AsSentField(serializers.Field):
    """A value taken as sent, None when left out: the service checks it, so the API
    and the dashboard answer the published texts ("URL is required", "Invalid events:
    ...") alike, in the published order. `required` is what the schema shows."""

    def __init__(self, *, required: bool, **kwargs):
        super().__init__(required=required, **kwargs)

    def validate_empty_values(self, data):
        if data is empty or data is None:
            return True, None
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


@extend_schema_field(OpenApiTypes.URI)
class UrlInput(AsSentField):
    pass


@extend_schema_field(
    {"type": "array", "items": {"type": "string", "enum": list(WEBHOOK_EVENTS)}, "minItems": 1}
)
class EventsInput(AsSentField):
    pass


@extend_schema_field(OpenApiTypes.STR)
class NameInput(AsSentField):
    pass


class EndpointInput(serializers.Serializer):
    """create-webhook.mdx's body: url, events and name required, description optional."""

    url = UrlInput(required=True, help_text="Endpoint URL that will receive webhook POSTs")
    events = EventsInput(required=True, help_text="Event types to subscribe to")
    name = NameInput(required=True, help_text="User-friendly name for this webhook")
    description = StrictTextField(max_length=2000, default=None)


class EndpointPatchInput(serializers.Serializer):
    """update-webhook.mdx's body: every field optional, `events` replaces the list."""

    url = UrlInput(required=False)
    events = EventsInput(required=False, help_text="Replaces the subscribed events")
    name = NameInput(required=False)
    description = StrictTextField(max_length=2000, default=None)
    isActive = StrictBooleanField(default=None)  # noqa: N815


SuccessOutput = inline_serializer("WebhookSuccess", {"success": serializers.BooleanField()})


class WebhookListApi(WorkspaceAPIView):
    """`/api/webhooks`: list (newest first) and create endpoints. The secret is shown
    only at creation."""

    permission_classes = [CanManageWorkspace]

    @extend_schema(
        summary="Webhook endpoints, newest first",
        responses=inline_serializer("WebhookList", {"webhooks": EndpointOutput(many=True)}),
    )
    def get(self, request):
        rows = webhooks.WebhookEndpoint.objects.filter(workspace=self.workspace).order_by(
            "-created_at", "-id"
        )
        return Response({"webhooks": EndpointOutput(rows, many=True).data})

    @extend_schema(
        summary="Create a webhook endpoint",
        request=EndpointInput,
        responses={201: EndpointCreatedOutput},
    )
    def post(self, request):
        data = validated(EndpointInput, request.data)
        endpoint = webhooks.webhook_endpoint_create(
            workspace=self.workspace,
            url=data["url"],
            events=data["events"],
            name=data["name"],
            description=data["description"] or "",
        )
        return Response(EndpointCreatedOutput(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookDetailApi(WorkspaceAPIView):
    permission_classes = [CanManageWorkspace]

    @extend_schema(summary="One webhook endpoint", responses=EndpointOutput)
    def get(self, request, endpoint_id):
        endpoint = webhooks.webhook_endpoint_get(workspace=self.workspace, endpoint_id=endpoint_id)
        return Response(EndpointOutput(endpoint).data)

    @extend_schema(
        summary="Change a webhook endpoint (only the fields given)",
        request=EndpointPatchInput,
        responses=SuccessOutput,
    )
    def patch(self, request, endpoint_id):
        data = validated(EndpointPatchInput, request.data)
        webhooks.webhook_endpoint_update(
            workspace=self.workspace,
            endpoint_id=endpoint_id,
            url=data["url"],
            events=data["events"],
            name=data["name"],
            description=data["description"],
            is_active=data["isActive"],
        )
        return Response({"success": True})

    @extend_schema(summary="Delete a webhook endpoint", responses={200: SuccessOutput})
    def delete(self, request, endpoint_id):
        webhooks.webhook_endpoint_delete(workspace=self.workspace, endpoint_id=endpoint_id)
        return Response({"success": True})


class WebhookHealthCheckApi(WorkspaceAPIView):
    """Send a signed test event (the endpoint's first subscribed event type, with
    `data.test: true`) now and report the answer."""

    permission_classes = [CanManageWorkspace]

    @extend_schema(
        summary="Send a test event",
        request=None,
        responses=inline_serializer(
            "WebhookHealthCheck",
            {
                "success": serializers.BooleanField(),
                "message": serializers.CharField(required=False),
                "statusCode": serializers.IntegerField(required=False),
                "response": serializers.CharField(required=False),
                "error": serializers.CharField(required=False),
                "details": serializers.CharField(required=False),
                "deliveryId": serializers.CharField(),
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
