from dataclasses import replace

from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response

from campaigns import selectors, services
from campaigns.api.conditions import BranchConditionInput, RuleInput
from campaigns.services import CampaignSettings
from campaigns.steps import BranchSpec, StepSpec, check_steps
from messaging.schedule import get_zone, parse_hhmm
from tuco.api.fields import CRM_ID_FIELDS, IsoDateTimeField, crm_ids_given
from tuco.api.pagination import PageQuery
from tuco.api.validation import validated
from tuco.api.views import WorkspaceAPIView
from tuco.errors import ServiceError, ValidationFailed

MAX_PAGE_SIZE = 100
CAMPAIGN_CREATED = "Campaign created successfully"


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


class PathStepOutput(StepSerializer):
    type = serializers.CharField(source="kind")
    stopRules = serializers.ListField(  # noqa: N815
        source="stop_rules",
        child=serializers.DictField(),
        help_text="Rule objects judged when the step comes due: one that is true stops "
        "the lead's sequence at this step",
    )


class StepOutput(PathStepOutput):
    """A step of the main sequence; a branch step (`type: "branch"`) carries its
    paths: each its condition (a rule object) and its own steps."""

    branches = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_branches(self, step) -> list[dict]:
        if not step.is_branch:
            return []
        paths = self.context.get("paths", {}).get(step.pk, {})
        return [
            {**condition, "steps": PathStepOutput(paths.get(j, []), many=True).data}
            for j, condition in enumerate(step.branch_conditions)
        ]


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
    stopped = serializers.IntegerField(
        help_text="Steps a stop condition stopped when they came due (also in cancelled)"
    )


class CampaignOutput(serializers.Serializer):
    """Needs `stats` in the context: {campaign id: stats}."""

    _id = serializers.CharField(source="pk")
    name = serializers.CharField()
    listId = serializers.CharField(source="lead_list_id", allow_null=True)  # noqa: N815
    status = serializers.CharField()
    steps = serializers.SerializerMethodField()
    lineIds = serializers.SerializerMethodField()  # noqa: N815
    settings = SettingsSerializer(source="*")
    stats = serializers.SerializerMethodField()
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815
    updatedAt = IsoDateTimeField(source="updated_at")  # noqa: N815
    startedAt = IsoDateTimeField(source="started_at", allow_null=True)  # noqa: N815
    completedAt = IsoDateTimeField(source="completed_at", allow_null=True)  # noqa: N815

    @extend_schema_field(StepOutput(many=True))
    def get_steps(self, campaign) -> list[dict]:
        steps = list(campaign.steps.all())
        paths: dict = {}
        for step in steps:
            if step.parent_id is not None:
                paths.setdefault(step.parent_id, {}).setdefault(step.path, []).append(step)
        main = [step for step in steps if step.parent_id is None]
        return StepOutput(main, many=True, context={"paths": paths}).data

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


class PathStepInput(StepSerializer):
    """A message step (the only kind a branch path holds)."""

    message = serializers.CharField(
        allow_blank=True, trim_whitespace=False, max_length=5000, required=False
    )
    type = serializers.CharField(
        source="kind", required=False, default="message", help_text="message or branch"
    )
    stopRules = RuleInput(many=True, required=False, source="stop_rules")  # noqa: N815

    def validate(self, attrs) -> StepSpec:
        return StepSpec(
            message=attrs.get("message", ""),
            delay=attrs.get("delay", 0),
            delay_unit=attrs.get("delay_unit", "days"),
            message_type=attrs.get("message_type", "imessage"),
            sms_fallback_message=attrs.get("sms_fallback_message") or "",
            stop_rules=tuple(attrs.get("stop_rules", ())),
            kind=attrs.get("kind", "message"),
            branches=tuple(attrs.get("branches", ())),
        )

    def validate_type(self, value: str) -> str:
        if value not in ("message", "branch"):
            raise serializers.ValidationError("Must be message or branch")
        return value


class BranchInput(BranchConditionInput):
    """One path of a branch step: its condition (a rule object) and its steps."""

    steps = PathStepInput(many=True, required=False)

    def validate(self, attrs) -> BranchSpec:
        steps = tuple(attrs.pop("steps", ()))
        return BranchSpec(condition=super().validate(attrs), steps=steps)


class StepInput(PathStepInput):
    branches = BranchInput(many=True, required=False)


class SettingsInput(SettingsSerializer):
    def validate(self, attrs) -> CampaignSettings:
        return CampaignSettings(**attrs)


class CampaignInput(serializers.Serializer):
    """A campaign to create, or (partial) the changes to one.

    The rules below the field types (a name, 1 to 20 steps with a message and a
    delay in range, a known time zone, HH:mm windows, day numbers) are checked in
    `validate`, in this order, once every field has its type; their errors name
    a step by its index ("steps[1].delay")."""

    name = serializers.CharField(allow_blank=True, max_length=200)
    listId = serializers.CharField(required=False, allow_blank=True, allow_null=True)  # noqa: N815
    steps = StepInput(many=True, allow_empty=True)
    lineIds = serializers.ListField(child=serializers.CharField(), required=False)  # noqa: N815
    settings = SettingsInput(required=False)

    def validate(self, attrs):
        if "name" in attrs and not attrs["name"]:
            raise serializers.ValidationError({"name": "A campaign needs a name"})
        if "settings" in attrs:
            attrs["settings"] = self._checked_settings(attrs["settings"])
        if "steps" in attrs:
            self._check_steps(attrs["steps"])
        return attrs

    @staticmethod
    def _checked_settings(settings: CampaignSettings) -> CampaignSettings:
        if settings.timezone:
            try:
                get_zone(settings.timezone)
            except ValueError as exc:
                raise serializers.ValidationError({"settings.timezone": str(exc)}) from None
        for key, value in (
            ("sendWindowStart", settings.send_window_start),
            ("sendWindowEnd", settings.send_window_end),
        ):
            if value:
                try:
                    parse_hhmm(value)
                except ValueError:
                    raise serializers.ValidationError(
                        {f"settings.{key}": "Must be a time in HH:mm format"}
                    ) from None
        days = settings.allowed_days
        if days is None:
            return settings
        if not all(0 <= day <= 6 for day in days):
            raise serializers.ValidationError(
                {"settings.allowedDaysOfWeek": "Must be a list of day numbers, 0 (Sunday) to 6"}
            )
        return replace(settings, allowed_days=sorted(set(days)))

    @staticmethod
    def _check_steps(steps: list[StepSpec]) -> None:
        # The shape and limits; the API tools the conditions name are checked by
        # the service, which knows the workspace.
        try:
            check_steps(None, steps)
        except ValidationFailed as exc:
            raise serializers.ValidationError({exc.field: exc.message}) from None


class ActionInput(serializers.Serializer):
    campaignId = serializers.CharField()  # noqa: N815
    action = serializers.CharField()

    def validate_action(self, value: str) -> str:
        if value not in services.ACTIONS:
            raise serializers.ValidationError("Must be start, pause, resume or retry_failed")
        return value


class CampaignListQuery(PageQuery):
    MAX_LIMIT = MAX_PAGE_SIZE
    INVALID_TEXT = "Must be a whole number"
    CLAMP_LOW = True
    CLAMP_LIMIT = True

    status = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)


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


class CampaignsApi(WorkspaceAPIView):
    rate_limit_group = "campaigns"
    idempotent_post = True

    @extend_schema(
        parameters=[CampaignListQuery],
        responses=CampaignPage,
        summary="List campaigns, with their stats",
    )
    def get(self, request):
        query = validated(CampaignListQuery, request.query_params)
        page, limit = query["page"], query["limit"]
        campaigns = selectors.campaign_list(
            workspace=self.workspace, status=query.get("status") or None
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
        request=CampaignInput,
        responses={
            201: inline_serializer(
                "CampaignCreated",
                {"campaign": CampaignOutput(), "message": serializers.CharField()},
            )
        },
        summary="Create a campaign",
    )
    def post(self, request):
        data = validated(CampaignInput, request.data)
        campaign = services.campaign_create(
            workspace=self.workspace,
            name=data["name"],
            steps=data["steps"],
            list_id=data.get("listId"),
            line_ids=data.get("lineIds"),
            settings=data.get("settings", CampaignSettings()),
        )
        campaign = selectors.campaign_get(workspace=self.workspace, campaign_id=campaign.pk)
        return Response(
            {"campaign": _output(campaign), "message": CAMPAIGN_CREATED},
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        request=ActionInput,
        responses=ActionOutput,
        summary="start, pause, resume or retry_failed a campaign",
    )
    def put(self, request):
        data = validated(ActionInput, request.data)
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
        data = validated(CampaignInput, request.data, partial=True)
        services.campaign_update(
            workspace=self.workspace,
            campaign_id=campaign_id,
            name=data.get("name"),
            steps=data.get("steps"),
            list_id=data.get("listId", services.UNCHANGED),
            line_ids=data.get("lineIds"),
            settings=data.get("settings", CampaignSettings()),
        )
        campaign = selectors.campaign_get(workspace=self.workspace, campaign_id=campaign_id)
        return Response(_output(campaign))


EITHER_REQUIRED = "Either leadId or lead data is required"
FIRST_NAME_REQUIRED = "firstName is required"
EMAIL_OR_PHONE_REQUIRED = "Either email or phone is required"


def _given(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


class EnrollInput(serializers.Serializer):
    """`leadId` (blank counts as not given), or a `lead` to match or create, which
    needs a firstName and an email or phone; the published 400 texts, raised as they
    are."""

    leadId = serializers.CharField(required=False, allow_blank=True, allow_null=True)  # noqa: N815
    lead = serializers.DictField(required=False, allow_null=True)

    def validate(self, attrs):
        attrs["leadId"] = (attrs.get("leadId") or "").strip()
        if attrs["leadId"]:
            return attrs
        lead = attrs.get("lead")
        if lead is None:
            raise ServiceError(EITHER_REQUIRED)
        if not _given(lead.get("firstName")):
            raise ServiceError(FIRST_NAME_REQUIRED)
        if not (_given(lead.get("email")) or _given(lead.get("phone"))):
            raise ServiceError(EMAIL_OR_PHONE_REQUIRED)
        return attrs


EnrollOutput = inline_serializer(
    "CampaignEnrollResult",
    {
        "success": serializers.BooleanField(),
        "leadId": serializers.CharField(),
        "campaignId": serializers.CharField(),
        "messageCount": serializers.IntegerField(),
        "message": serializers.CharField(),
        "alreadyInCampaign": serializers.BooleanField(),
        **{
            name: serializers.CharField(allow_null=True, help_text="As given in the request")
            for name in CRM_ID_FIELDS
        },
        "existingLeadIds": serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text="With alreadyInCampaign: the enrolled lead's id",
        ),
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
        data = validated(EnrollInput, request.data)
        result = services.campaign_enroll_lead(
            workspace=self.workspace,
            campaign_id=campaign_id,
            lead_id=data["leadId"] or None,
            lead_data=data.get("lead"),
        )
        body = {
            "success": True,
            "leadId": result.lead.pk,
            "campaignId": result.campaign.pk,
            "messageCount": result.message_count,
            **crm_ids_given(data.get("lead"), request.data),
        }
        if result.already:
            body.update(
                message="Lead already in campaign (re-entry not allowed).",
                alreadyInCampaign=True,
                existingLeadIds=[result.lead.pk],
            )
            return Response(body, status=status.HTTP_200_OK)
        body.update(message="Lead added to campaign and sequence started", alreadyInCampaign=False)
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
