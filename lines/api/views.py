from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from lines import safety, selectors, services, validators, warmup
from lines.models import Line
from tuco.api.auth import CanManageWorkspace
from tuco.api.fields import IsoDateTimeField
from tuco.api.validation import validated
from tuco.api.views import WorkspaceAPIView
from tuco.errors import ServiceError


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
    line is not used while it is. A missing `lastCheckedAt` tells the two apart. A new or
    re-pointed line is checked as soon as it is saved, so this lasts seconds.

    A quarantined line is shown as down (round robin skips it); a degraded one as
    healthy (it is used). `safety.state` tells them apart.
    """

    def __init__(self, **kwargs):
        super().__init__(choices=[Line.Health.HEALTHY, Line.Health.DOWN], **kwargs)

    def to_representation(self, value):
        if value in Line.OUT_OF_ROTATION:
            return Line.Health.DOWN.value
        return Line.Health.HEALTHY.value


class HealthOutput(serializers.Serializer):
    """`lastCheckedAt` is left out until the line's first check: the published schema
    types it as a date-time, never null."""

    status = HealthStatusField(source="health_status")
    lastCheckedAt = IsoDateTimeField(source="health_checked_at", required=False)  # noqa: N815
    consecutiveFailures = serializers.IntegerField(  # noqa: N815
        source="health_consecutive_failures"
    )
    detail = serializers.CharField(source="health_detail")

    def to_representation(self, instance):
        body = super().to_representation(instance)
        if body.get("lastCheckedAt") is None:
            body.pop("lastCheckedAt", None)
        return body


class SafetyOutput(serializers.Serializer):
    """Line safety: the state with its reason, and the automatic action in force."""

    state = serializers.CharField(source="health_status")
    reason = serializers.CharField(source="health_detail")
    action = serializers.CharField(source="safety_action", allow_null=True)
    actionReason = serializers.CharField(source="safety_action_reason")  # noqa: N815
    actionSince = IsoDateTimeField(source="safety_action_since", allow_null=True)  # noqa: N815
    actionUntil = IsoDateTimeField(source="safety_action_until", allow_null=True)  # noqa: N815
    overrideUntil = IsoDateTimeField(  # noqa: N815
        source="safety_override_until", allow_null=True
    )
    canaryAddress = serializers.CharField(source="canary_address")  # noqa: N815
    consecutiveSendFailures = serializers.IntegerField(  # noqa: N815
        source="send_consecutive_failures"
    )

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["action"] = data["action"] or None
        return data


class WarmupOutput(serializers.Serializer):
    """The line's warm-up: `active` false (and the rest null) when it is not warming."""

    active = serializers.BooleanField()
    day = serializers.IntegerField(allow_null=True)
    days = serializers.IntegerField(allow_null=True)
    newConversationsCapToday = serializers.IntegerField(allow_null=True)  # noqa: N815
    startedAt = IsoDateTimeField(allow_null=True)  # noqa: N815


def warmup_data(line: Line, policy: warmup.Policy | None = None) -> dict:
    state = warmup.line_warmup(line, policy=policy)
    if state is None:
        return {
            "active": False,
            "day": None,
            "days": None,
            "newConversationsCapToday": None,
            "startedAt": None,
        }
    return {
        "active": True,
        "day": state.day,
        "days": state.days,
        "newConversationsCapToday": state.cap_today,
        "startedAt": state.started_at,
    }


class LineOutput(serializers.Serializer):
    _id = serializers.CharField(source="pk")
    workspaceId = serializers.CharField(source="workspace_id")  # noqa: N815
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
    warmup = serializers.SerializerMethodField()
    healthCheck = HealthOutput(source="*")  # noqa: N815
    safety = SafetyOutput(source="*")
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815
    updatedAt = IsoDateTimeField(source="updated_at")  # noqa: N815

    @extend_schema(responses=UsageOutput)
    def get_usage(self, line) -> dict:
        return UsageOutput(selectors.line_today_usage(line)).data

    @extend_schema_field(WarmupOutput)
    def get_warmup(self, line) -> dict:
        # One policy read per response, however many lines it lists.
        policy = self.context.get("line_policy")
        if policy is None and line.warmup_started_at is not None:
            policy = self.context["line_policy"] = warmup.policy_for(line.workspace_id)
        return WarmupOutput(warmup_data(line, policy)).data


def _limit(source: str):
    return serializers.IntegerField(source=source, required=False, min_value=0, max_value=100000)


def _gap(source: str):
    return serializers.IntegerField(source=source, required=False, min_value=0, max_value=86400)


class LineInput(serializers.Serializer):
    """A line to add, or (partial) the changes to one; validated data is keyed by the
    line services' argument names."""

    phone = serializers.CharField(required=False, allow_blank=True, max_length=40)
    email = serializers.CharField(required=False, allow_blank=True, max_length=254)
    firstName = serializers.CharField(  # noqa: N815
        source="first_name", required=False, allow_blank=True, max_length=100
    )
    lastName = serializers.CharField(  # noqa: N815
        source="last_name", required=False, allow_blank=True, max_length=100
    )
    serverUrl = serializers.CharField(source="server_url", max_length=500)  # noqa: N815
    password = serializers.CharField(
        source="relay_password", write_only=True, max_length=500, trim_whitespace=False
    )
    isActive = serializers.BooleanField(source="is_active", required=False)  # noqa: N815
    provisioningStatus = serializers.CharField(  # noqa: N815
        source="provisioning_status", required=False, max_length=32
    )
    lineType = serializers.ChoiceField(  # noqa: N815
        source="line_type", choices=["byon"], required=False
    )
    dailyNewConversationsLimit = _limit("daily_new_conversations_limit")  # noqa: N815
    dailyTotalMessagesLimit = _limit("daily_total_messages_limit")  # noqa: N815
    dailyAvailabilityChecksLimit = _limit("daily_availability_checks_limit")  # noqa: N815
    deviceGapSeconds = _gap("device_gap_seconds")  # noqa: N815
    contactGapSeconds = _gap("contact_gap_seconds")  # noqa: N815
    checkGapSeconds = _gap("check_gap_seconds")  # noqa: N815
    canaryAddress = serializers.CharField(  # noqa: N815
        source="canary_address", required=False, allow_blank=True, max_length=254
    )

    def validate_canaryAddress(self, value: str) -> str:  # noqa: N802
        if not value.strip():
            return ""
        try:
            return validators.clean_email(value) if "@" in value else validators.clean_phone(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_phone(self, value: str) -> str:
        return _normalized(validators.clean_phone, value)

    def validate_email(self, value: str) -> str:
        return _normalized(validators.clean_email, value)

    def validate_serverUrl(self, value: str) -> str:  # noqa: N802
        return _normalized(validators.clean_server_url, value)


def _normalized(clean, value: str) -> str:
    try:
        return clean(value)
    except ValueError as exc:
        raise serializers.ValidationError(str(exc)) from None


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
        data = validated(LineInput, request.data)
        line = services.line_create(workspace=self.workspace, **data)
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
        data = validated(LineInput, request.data, partial=True)
        services.line_update(workspace=self.workspace, line_id=line_id, **data)
        line = selectors.line_get(workspace=self.workspace, line_id=line_id)
        return Response(LineOutput(line).data)

    put = patch

    @extend_schema(
        responses={200: inline_serializer("LineDeleted", {"success": serializers.BooleanField()})},
        summary="Remove a line",
    )
    def delete(self, request, line_id):
        selectors.line_get(workspace=self.workspace, line_id=line_id)
        services.line_delete(workspace=self.workspace, line_id=line_id)
        return Response({"success": True})


LINE_ID_REQUIRED = "Line ID is required"
LINE_NOT_ACTIVE = "Line is not active"


class LineCheckQuery(serializers.Serializer):
    id = serializers.CharField(required=False, allow_blank=True, help_text="Line id (required)")

    def validate_id(self, value: str) -> str:
        if not value.strip():
            raise ServiceError(LINE_ID_REQUIRED)
        return value.strip()

    def validate(self, attrs):
        if "id" not in attrs:
            raise ServiceError(LINE_ID_REQUIRED)
        return attrs


class LineCheckOutput(serializers.Serializer):
    """The outcome of one health check (ping and server info) of a line."""

    success = serializers.SerializerMethodField()
    lineId = serializers.CharField(source="pk")  # noqa: N815
    status = HealthStatusField(source="health_status")
    failures = serializers.SerializerMethodField(
        help_text="What failed in this check; empty when the line answered as it should"
    )
    consecutiveFailures = serializers.IntegerField(  # noqa: N815
        source="health_consecutive_failures"
    )
    checkedAt = IsoDateTimeField(source="health_checked_at", allow_null=True)  # noqa: N815

    def get_success(self, line) -> bool:
        return True

    def get_failures(self, line) -> list[str]:
        failing = line.health_consecutive_failures or line.health_status not in (
            Line.Health.HEALTHY,
            Line.Health.UNKNOWN,
        )
        return [line.health_detail] if failing and line.health_detail else []


def _checked(workspace, line) -> Line:
    """Health-check the line now (talks to its relay: not inside a transaction)."""
    services.line_health_check(line=line)
    return selectors.line_get(workspace=workspace, line_id=line.pk)


class LineCheckApi(WorkspaceAPIView):
    @extend_schema(
        parameters=[LineCheckQuery],
        responses=LineCheckOutput,
        summary="Check a line's health now (relay ping and server info)",
        description='Records the outcome on the line. 400 "Line ID is required" without '
        '`id`, "Line is not active" for an inactive line; 404 for an unknown one. A line '
        "goes down after LINE_DOWN_AFTER_FAILURES failed checks in a row, so one failure "
        "shows in `failures` while `status` may still be healthy.",
    )
    def get(self, request):
        query = validated(LineCheckQuery, request.query_params)
        line = selectors.line_get(workspace=self.workspace, line_id=query["id"])
        if not line.is_active:
            raise ServiceError(LINE_NOT_ACTIVE)
        return Response(LineCheckOutput(_checked(self.workspace, line)).data)


class LinesHealthCheckOutput(serializers.Serializer):
    success = serializers.BooleanField()
    checked = serializers.IntegerField()
    healthy = serializers.IntegerField()
    down = serializers.IntegerField()
    lines = LineCheckOutput(many=True)


class LinesHealthCheckApi(WorkspaceAPIView):
    @extend_schema(
        request=None,
        responses=LinesHealthCheckOutput,
        summary="Check the health of every active line of the workspace now",
        description="What the periodic health check does, on demand: each active line's "
        "relay is pinged and asked for its server info, one line after the other, and the "
        "outcome recorded on the line.",
    )
    def get(self, request):
        lines = [
            _checked(self.workspace, line)
            for line in selectors.line_list(workspace=self.workspace).filter(is_active=True)
        ]
        results = LineCheckOutput(lines, many=True).data
        down = sum(1 for result in results if result["status"] == Line.Health.DOWN)
        return Response(
            {
                "success": True,
                "checked": len(results),
                "healthy": len(results) - down,
                "down": down,
                "lines": results,
            }
        )

    @extend_schema(
        request=None,
        responses=LinesHealthCheckOutput,
        summary="Same as GET",
    )
    def post(self, request):
        return self.get(request)


class LineWebhookTokenRotateApi(WorkspaceAPIView):
    """`POST /api/lines/{id}/rotate-callback-token`: a new relay callback URL."""

    permission_classes = [CanManageWorkspace]

    @extend_schema(
        request=None,
        responses=LineOutput,
        summary="Give a line a new relay callback URL (the old one stops working)",
    )
    def post(self, request, line_id):
        selectors.line_get(workspace=self.workspace, line_id=line_id)
        services.line_webhook_token_rotate(workspace=self.workspace, line_id=line_id)
        line = selectors.line_get(workspace=self.workspace, line_id=line_id)
        return Response(LineOutput(line).data)


class SpamMonitorLineOutput(serializers.Serializer):
    lineId = serializers.CharField()  # noqa: N815
    linePhone = serializers.CharField(allow_null=True)  # noqa: N815
    lineType = serializers.CharField()  # noqa: N815
    totalSentLast24h = serializers.IntegerField()  # noqa: N815
    failedLast24h = serializers.IntegerField()  # noqa: N815
    failureRate = serializers.FloatField()  # noqa: N815
    consecutiveFailures = serializers.IntegerField()  # noqa: N815
    spamRisk = serializers.ChoiceField(choices=["low", "medium", "high"])  # noqa: N815
    recommendation = serializers.CharField()
    deliveredLast24h = serializers.IntegerField()  # noqa: N815
    deliveryRate = serializers.FloatField(allow_null=True)  # noqa: N815
    repliesLast7d = serializers.IntegerField()  # noqa: N815
    sentLast7d = serializers.IntegerField()  # noqa: N815
    replyRate = serializers.FloatField(allow_null=True)  # noqa: N815
    state = serializers.CharField()
    reason = serializers.CharField()
    action = serializers.CharField(allow_null=True)
    actionReason = serializers.CharField(allow_null=True)  # noqa: N815
    actionUntil = serializers.CharField(allow_null=True)  # noqa: N815


class SpamMonitorApi(WorkspaceAPIView):
    @extend_schema(
        responses=inline_serializer("SpamMonitor", {"lines": SpamMonitorLineOutput(many=True)}),
        summary="Failure rates and spam risk of every line, with the action in force",
    )
    def get(self, request):
        return Response({"lines": selectors.spam_monitor(workspace=self.workspace)})


class LineSafetyOverrideApi(WorkspaceAPIView):
    permission_classes = [CanManageWorkspace]

    @extend_schema(
        request=None,
        responses=LineOutput,
        summary="Lift the automatic safety action on a line (owners and admins)",
    )
    def post(self, request, line_id):
        selectors.line_get(workspace=self.workspace, line_id=line_id)
        safety.line_safety_override(workspace=self.workspace, line_id=line_id)
        return Response(
            LineOutput(selectors.line_get(workspace=self.workspace, line_id=line_id)).data
        )


class LineWarmupApi(WorkspaceAPIView):
    """Restart the line's warm-up from day 1 (POST) or end it (DELETE)."""

    permission_classes = [CanManageWorkspace]

    @extend_schema(request=None, responses=LineOutput, summary="Restart a line's warm-up")
    def post(self, request, line_id):
        selectors.line_get(workspace=self.workspace, line_id=line_id)
        services.line_warmup_restart(workspace=self.workspace, line_id=line_id)
        return Response(
            LineOutput(selectors.line_get(workspace=self.workspace, line_id=line_id)).data
        )

    @extend_schema(responses={200: LineOutput}, summary="End a line's warm-up")
    def delete(self, request, line_id):
        selectors.line_get(workspace=self.workspace, line_id=line_id)
        services.line_warmup_end(workspace=self.workspace, line_id=line_id)
        return Response(
            LineOutput(selectors.line_get(workspace=self.workspace, line_id=line_id)).data
        )
