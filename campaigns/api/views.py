from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response

from campaigns import selectors, services
from tuco.api.fields import IsoDateTimeField
from tuco.api.views import WorkspaceAPIView

MAX_PAGE_SIZE = 100


class StepSerializer(serializers.Serializer):
    message = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=5000)
    delay = serializers.IntegerField(required=False, default=0)
    delayUnit = serializers.ChoiceField(  # noqa: N815
        source="delay_unit", choices=["minutes", "hours", "days"], required=False, default="days"
    )
    messageType = serializers.ChoiceField(  # noqa: N815
        source="message_type", choices=["imessage", "sms", "email"], required=False,
        default="imessage",
    )  # fmt: skip
    smsFallbackMessage = serializers.CharField(  # noqa: N815
        source="sms_fallback_message", required=False, allow_blank=True, allow_null=True,
        max_length=1600,
    )  # fmt: skip


class SettingsSerializer(serializers.Serializer):
    sendImmediately = serializers.BooleanField(source="send_immediately", required=False)  # noqa: N815
    randomizeOrder = serializers.BooleanField(source="randomize_order", required=False)  # noqa: N815
    timezone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    sendWindowStart = serializers.CharField(  # noqa: N815
        source="send_window_start", required=False, allow_blank=True, max_length=5
    )
    sendWindowEnd = serializers.CharField(  # noqa: N815
        source="send_window_end", required=False, allow_blank=True, max_length=5
    )
    allowedDaysOfWeek = serializers.ListField(  # noqa: N815
        source="allowed_days", child=serializers.IntegerField(), required=False
    )
    replyBehavior = serializers.ChoiceField(  # noqa: N815
        source="reply_behavior", choices=["stop", "continue"], required=False
    )


class StatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    pending = serializers.IntegerField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    replied = serializers.IntegerField()
    failed = serializers.IntegerField()
    fallback = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    stalled = serializers.IntegerField(
        help_text="Not sent because an earlier step failed; retry_failed sends them"
    )


class CampaignOutput(serializers.Serializer):
    """Needs `stats` in the context: {campaign id: stats}."""

    _id = serializers.CharField(source="pk")
    name = serializers.CharField()
    listId = serializers.CharField(source="lead_list_id", allow_null=True)  # noqa: N815
    status = serializers.CharField()
    steps = StepSerializer(many=True, source="steps.all")
    lineIds = serializers.SerializerMethodField()  # noqa: N815
    settings = SettingsSerializer(source="*")
    stats = serializers.SerializerMethodField()
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815
    updatedAt = IsoDateTimeField(source="updated_at")  # noqa: N815
    startedAt = IsoDateTimeField(source="started_at", allow_null=True)  # noqa: N815
    completedAt = IsoDateTimeField(source="completed_at", allow_null=True)  # noqa: N815

    def get_lineIds(self, campaign) -> list[str]:  # noqa: N802
        return [line.pk for line in campaign.lines.all()]

    @extend_schema_field(StatsSerializer)
    def get_stats(self, campaign) -> dict:
        return self.context["stats"].get(campaign.pk) or dict.fromkeys(selectors.STAT_KEYS, 0)


def _output(campaign_or_list, many=False):
    items = list(campaign_or_list) if many else [campaign_or_list]
    stats = selectors.campaign_stats(c.pk for c in items)
    data = CampaignOutput(items, many=True, context={"stats": stats}).data
    return data if many else data[0]


class CampaignInput(serializers.Serializer):
    name = serializers.CharField(allow_blank=True, max_length=200)
    listId = serializers.CharField(required=False, allow_blank=True, allow_null=True)  # noqa: N815
    steps = StepSerializer(many=True, allow_empty=True)
    lineIds = serializers.ListField(child=serializers.CharField(), required=False)  # noqa: N815
    settings = SettingsSerializer(required=False)


class ActionInput(serializers.Serializer):
    campaignId = serializers.CharField()  # noqa: N815
    action = serializers.CharField()


CampaignPage = inline_serializer(
    "CampaignPage",
    {
        "campaigns": CampaignOutput(many=True),
        "pagination": inline_serializer(
            "CampaignPagination",
            {
                "page": serializers.IntegerField(),
                "limit": serializers.IntegerField(),
                "totalCount": serializers.IntegerField(),
                "totalPages": serializers.IntegerField(),
            },
        ),
    },
)
ActionOutput = inline_serializer(
    "CampaignActionResult",
    {"success": serializers.BooleanField(), "action": serializers.CharField(),
     "campaign": CampaignOutput()},
)  # fmt: skip


def _steps_for_service(steps: list[dict]) -> list[dict]:
    """Serializer output (model names) back to the API names the service validates."""
    return [
        {
            "message": s["message"],
            "delay": s.get("delay", 0),
            "delayUnit": s.get("delay_unit", "days"),
            "messageType": s.get("message_type", "imessage"),
            "smsFallbackMessage": s.get("sms_fallback_message") or "",
        }
        for s in steps
    ]


def _settings_for_service(settings: dict | None) -> dict | None:
    if settings is None:
        return None
    names = {
        "send_immediately": "sendImmediately",
        "randomize_order": "randomizeOrder",
        "timezone": "timezone",
        "send_window_start": "sendWindowStart",
        "send_window_end": "sendWindowEnd",
        "allowed_days": "allowedDaysOfWeek",
        "reply_behavior": "replyBehavior",
    }
    return {names[k]: v for k, v in settings.items()}


def _page_arg(request, name, default, maximum=None) -> int:
    raw = request.query_params.get(name)
    try:
        value = int(raw) if raw not in (None, "") else default
    except ValueError:
        from tuco.errors import ValidationFailed

        raise ValidationFailed("Must be a whole number", field=name) from None
    value = max(1, value)
    return min(value, maximum) if maximum else value


class CampaignsApi(WorkspaceAPIView):
    rate_limit_group = "campaigns"
    idempotent_post = True

    @extend_schema(responses=CampaignPage, summary="List campaigns, with their stats")
    def get(self, request):
        page = _page_arg(request, "page", 1)
        limit = _page_arg(request, "limit", 50, MAX_PAGE_SIZE)
        campaigns = selectors.campaign_list(
            workspace=self.workspace, status=request.query_params.get("status") or None
        )
        total = campaigns.count()
        items = list(campaigns[(page - 1) * limit : page * limit])
        return Response(
            {
                "campaigns": _output(items, many=True),
                "pagination": {
                    "page": page,
                    "limit": limit,
                    "totalCount": total,
                    "totalPages": (total + limit - 1) // limit,
                },
            }
        )

    @extend_schema(
        request=CampaignInput, responses={201: CampaignOutput}, summary="Create a campaign"
    )
    def post(self, request):
        serializer = CampaignInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        campaign = services.campaign_create(
            workspace=self.workspace,
            name=data["name"],
            steps=_steps_for_service(data["steps"]),
            list_id=data.get("listId"),
            line_ids=data.get("lineIds"),
            settings=_settings_for_service(data.get("settings")),
        )
        campaign = selectors.campaign_get(workspace=self.workspace, campaign_id=campaign.pk)
        return Response(_output(campaign), status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ActionInput,
        responses=ActionOutput,
        summary="start, pause, resume or retry_failed a campaign",
    )
    def put(self, request):
        serializer = ActionInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        campaign = services.campaign_action(
            workspace=self.workspace, campaign_id=data["campaignId"], action=data["action"]
        )
        campaign = selectors.campaign_get(workspace=self.workspace, campaign_id=campaign.pk)
        return Response({"success": True, "action": data["action"], "campaign": _output(campaign)})


class CampaignDetailApi(WorkspaceAPIView):
    rate_limit_group = "campaigns"

    @extend_schema(responses=CampaignOutput, summary="One campaign, with its stats")
    def get(self, request, campaign_id):
        campaign = selectors.campaign_get(workspace=self.workspace, campaign_id=campaign_id)
        return Response(_output(campaign))

    @extend_schema(
        request=CampaignInput(partial=True), responses=CampaignOutput, summary="Change a campaign"
    )
    def patch(self, request, campaign_id):
        selectors.campaign_get(workspace=self.workspace, campaign_id=campaign_id)
        serializer = CampaignInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        services.campaign_update(
            workspace=self.workspace,
            campaign_id=campaign_id,
            name=data.get("name"),
            steps=_steps_for_service(data["steps"]) if "steps" in data else None,
            list_id=data.get("listId", ...),
            line_ids=data.get("lineIds"),
            settings=_settings_for_service(data.get("settings")),
        )
        campaign = selectors.campaign_get(workspace=self.workspace, campaign_id=campaign_id)
        return Response(_output(campaign))


class EnrollInput(serializers.Serializer):
    leadId = serializers.CharField(required=False, allow_blank=True, allow_null=True)  # noqa: N815
    lead = serializers.DictField(required=False, allow_null=True)


EnrollOutput = inline_serializer(
    "CampaignEnrollResult",
    {
        "success": serializers.BooleanField(),
        "leadId": serializers.CharField(),
        "campaignId": serializers.CharField(),
        "messageCount": serializers.IntegerField(),
        "message": serializers.CharField(),
        "alreadyInCampaign": serializers.BooleanField(required=False),
        "cancelled": serializers.BooleanField(
            required=False,
            help_text="Present (true) when every step was cancelled at once: the lead opted "
            "out or is on the do-not-contact list",
        ),
        "reason": serializers.CharField(required=False, help_text="Why, with cancelled"),
    },
)


class CampaignEnrollApi(WorkspaceAPIView):
    rate_limit_group = "campaign_add_lead"
    idempotent_post = True

    @extend_schema(
        request=EnrollInput,
        responses={201: EnrollOutput, 200: EnrollOutput},
        summary="Add a lead to a campaign and start its sequence",
    )
    def post(self, request, campaign_id):
        serializer = EnrollInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.campaign_enroll_lead(
            workspace=self.workspace,
            campaign_id=campaign_id,
            lead_id=data.get("leadId"),
            lead_data=data.get("lead"),
        )
        body = {
            "success": True,
            "leadId": result.lead.pk,
            "campaignId": result.campaign.pk,
            "messageCount": result.message_count,
        }
        if result.already:
            body.update(
                alreadyInCampaign=True, message="Lead already in campaign (re-entry not allowed)."
            )
            return Response(body, status=status.HTTP_200_OK)
        body["message"] = "Lead added to campaign and sequence started"
        if result.cancel_reason:
            # The documented body stays, so clients keep working; these say that
            # nothing will actually go out.
            body.update(cancelled=True, reason=result.cancel_reason)
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema_view(
    post=extend_schema(
        operation_id="campaign_enroll_alias",
        summary="Add a lead to a campaign (alias of /leads)",
    )
)
class CampaignEnrollAliasApi(CampaignEnrollApi):
    pass
