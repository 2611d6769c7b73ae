from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from lines import selectors, services
from lines.models import Line
from tuco.api.auth import CanManageWorkspace
from tuco.api.fields import IsoDateTimeField
from tuco.api.views import WorkspaceAPIView

# API name -> model field, for the writable fields.
WRITABLE = {
    "phone": "phone",
    "email": "email",
    "firstName": "first_name",
    "lastName": "last_name",
    "serverUrl": "server_url",
    "password": "relay_password",
    "isActive": "is_active",
    "provisioningStatus": "provisioning_status",
    "lineType": "line_type",
    "dailyNewConversationsLimit": "daily_new_conversations_limit",
    "dailyTotalMessagesLimit": "daily_total_messages_limit",
    "dailyAvailabilityChecksLimit": "daily_availability_checks_limit",
    "deviceGapSeconds": "device_gap_seconds",
    "contactGapSeconds": "contact_gap_seconds",
    "checkGapSeconds": "check_gap_seconds",
}


class UsageOutput(serializers.Serializer):
    date = serializers.DateField()
    newConversationsCount = serializers.IntegerField(source="new_conversations_count")  # noqa: N815
    totalMessagesCount = serializers.IntegerField(source="total_messages_count")  # noqa: N815
    availabilityChecksCount = serializers.IntegerField(  # noqa: N815
        source="availability_checks_count"
    )


class HealthStatusField(serializers.ChoiceField):
    """healthy | down, the only values API.md allows.

    A line that was never checked (internally "unknown": just created, before its
    first health check has answered) is shown as healthy, because that is how it is
    treated: round robin skips only down lines, so calling it "down" would say the
    line is not used while it is. `lastCheckedAt: null` tells the two apart. A new or
    re-pointed line is checked as soon as it is saved, so this lasts seconds.
    """

    def __init__(self, **kwargs):
        super().__init__(choices=[Line.Health.HEALTHY, Line.Health.DOWN], **kwargs)

    def to_representation(self, value):
        return Line.Health.DOWN.value if value == Line.Health.DOWN else Line.Health.HEALTHY.value


class HealthOutput(serializers.Serializer):
    status = HealthStatusField(source="health_status")
    lastCheckedAt = IsoDateTimeField(source="health_checked_at", allow_null=True)  # noqa: N815
    consecutiveFailures = serializers.IntegerField(  # noqa: N815
        source="health_consecutive_failures"
    )
    detail = serializers.CharField(source="health_detail")


class LineOutput(serializers.Serializer):
    _id = serializers.CharField(source="pk")
    phone = serializers.CharField()
    email = serializers.CharField()
    firstName = serializers.CharField(source="first_name")  # noqa: N815
    lastName = serializers.CharField(source="last_name")  # noqa: N815
    serverUrl = serializers.CharField(source="server_url")  # noqa: N815
    isActive = serializers.BooleanField(source="is_active")  # noqa: N815
    provisioningStatus = serializers.CharField(source="provisioning_status")  # noqa: N815
    lineType = serializers.CharField(source="line_type")  # noqa: N815
    dailyNewConversationsLimit = serializers.IntegerField(  # noqa: N815
        source="daily_new_conversations_limit"
    )
    dailyTotalMessagesLimit = serializers.IntegerField(  # noqa: N815
        source="daily_total_messages_limit"
    )
    dailyAvailabilityChecksLimit = serializers.IntegerField(  # noqa: N815
        source="daily_availability_checks_limit"
    )
    deviceGapSeconds = serializers.IntegerField(source="device_gap_seconds")  # noqa: N815
    contactGapSeconds = serializers.IntegerField(source="contact_gap_seconds")  # noqa: N815
    checkGapSeconds = serializers.IntegerField(source="check_gap_seconds")  # noqa: N815
    usage = serializers.SerializerMethodField()
    healthCheck = HealthOutput(source="*")  # noqa: N815
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815
    updatedAt = IsoDateTimeField(source="updated_at")  # noqa: N815

    @extend_schema(responses=UsageOutput)
    def get_usage(self, line) -> dict:
        return UsageOutput(selectors.line_today_usage(line)).data


class LineInput(serializers.Serializer):
    phone = serializers.CharField(required=False, allow_blank=True, max_length=40)
    email = serializers.CharField(required=False, allow_blank=True, max_length=254)
    firstName = serializers.CharField(required=False, allow_blank=True, max_length=100)  # noqa: N815
    lastName = serializers.CharField(required=False, allow_blank=True, max_length=100)  # noqa: N815
    serverUrl = serializers.CharField(max_length=500)  # noqa: N815
    password = serializers.CharField(write_only=True, max_length=500, trim_whitespace=False)
    isActive = serializers.BooleanField(required=False)  # noqa: N815
    provisioningStatus = serializers.CharField(required=False, max_length=32)  # noqa: N815
    lineType = serializers.ChoiceField(choices=["byon"], required=False)  # noqa: N815
    dailyNewConversationsLimit = serializers.IntegerField(  # noqa: N815
        required=False, min_value=0, max_value=100000
    )
    dailyTotalMessagesLimit = serializers.IntegerField(  # noqa: N815
        required=False, min_value=0, max_value=100000
    )
    dailyAvailabilityChecksLimit = serializers.IntegerField(  # noqa: N815
        required=False, min_value=0, max_value=100000
    )
    deviceGapSeconds = serializers.IntegerField(  # noqa: N815
        required=False, min_value=0, max_value=86400
    )
    contactGapSeconds = serializers.IntegerField(  # noqa: N815
        required=False, min_value=0, max_value=86400
    )
    checkGapSeconds = serializers.IntegerField(  # noqa: N815
        required=False, min_value=0, max_value=86400
    )


def _model_fields(data: dict) -> dict:
    return {WRITABLE[key]: value for key, value in data.items() if key in WRITABLE}


class LinesByUserApi(WorkspaceAPIView):
    @extend_schema(
        responses=inline_serializer("LinesByUser", {"lines": LineOutput(many=True)}),
        summary="Lines of the workspace, with today's usage and limits",
    )
    def get(self, request):
        lines = selectors.line_list(workspace=self.workspace)
        return Response({"lines": LineOutput(lines, many=True).data})


class LineListApi(WorkspaceAPIView):
    def get_permissions(self):
        if self.request.method == "POST":
            return [CanManageWorkspace()]
        return super().get_permissions()

    @extend_schema(
        responses=inline_serializer("LineList", {"lines": LineOutput(many=True)}),
        summary="List lines",
    )
    def get(self, request):
        lines = selectors.line_list(workspace=self.workspace)
        return Response({"lines": LineOutput(lines, many=True).data})

    @extend_schema(request=LineInput, responses={201: LineOutput}, summary="Add a line")
    def post(self, request):
        serializer = LineInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = _model_fields(serializer.validated_data)
        line = services.line_create(
            workspace=self.workspace,
            server_url=fields.pop("server_url"),
            relay_password=fields.pop("relay_password"),
            **fields,
        )
        line = selectors.line_get(workspace=self.workspace, line_id=line.pk)
        return Response(LineOutput(line).data, status=status.HTTP_201_CREATED)


class LineDetailApi(WorkspaceAPIView):
    def get_permissions(self):
        if self.request.method in ("PATCH", "PUT", "DELETE"):
            return [CanManageWorkspace()]
        return super().get_permissions()

    @extend_schema(responses=LineOutput, summary="One line")
    def get(self, request, line_id):
        return Response(
            LineOutput(selectors.line_get(workspace=self.workspace, line_id=line_id)).data
        )

    @extend_schema(request=LineInput(partial=True), responses=LineOutput, summary="Change a line")
    def patch(self, request, line_id):
        selectors.line_get(workspace=self.workspace, line_id=line_id)
        serializer = LineInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.line_update(
            workspace=self.workspace,
            line_id=line_id,
            **_model_fields(serializer.validated_data),
        )
        line = selectors.line_get(workspace=self.workspace, line_id=line_id)
        return Response(LineOutput(line).data)

    put = patch

    @extend_schema(
        responses=inline_serializer("LineDeleted", {"success": serializers.BooleanField()}),
        summary="Remove a line",
    )
    def delete(self, request, line_id):
        selectors.line_get(workspace=self.workspace, line_id=line_id)
        services.line_delete(workspace=self.workspace, line_id=line_id)
        return Response({"success": True})
