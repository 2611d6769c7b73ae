"""`POST /api/campaigns/{id}/dry-run` (ours): the path a lead would take through a
campaign, without sending anything."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from campaigns.dryrun import DryRun, PlayedReply, dry_run
from tuco.api.fields import IsoDateTimeField
from tuco.api.validation import validated
from tuco.api.views import WorkspaceAPIView

MAX_REPLIES = 20


class PlayedReplyInput(serializers.Serializer):
    afterMessage = serializers.IntegerField(min_value=1, max_value=100)  # noqa: N815
    text = serializers.CharField(max_length=2000)


class DryRunInput(serializers.Serializer):
    leadId = serializers.CharField()  # noqa: N815
    replies = PlayedReplyInput(many=True, required=False, max_length=MAX_REPLIES)


_RESULT = inline_serializer(
    "DryRunConditionResult",
    {
        "ruleId": serializers.CharField(),
        "type": serializers.CharField(),
        "result": serializers.BooleanField(),
        "detail": serializers.CharField(),
    },
    many=True,
)
DryRunOutput = inline_serializer(
    "CampaignDryRun",
    {
        "campaignId": serializers.CharField(),
        "leadId": serializers.CharField(),
        "outcome": serializers.ChoiceField(choices=["completed", "stopped"]),
        "reason": serializers.CharField(),
        "steps": inline_serializer(
            "DryRunStep",
            {
                "label": serializers.CharField(),
                "kind": serializers.ChoiceField(choices=["message", "branch"]),
                "at": IsoDateTimeField(),
                "wait": serializers.CharField(),
                "text": serializers.CharField(),
                "channel": serializers.CharField(
                    help_text="imessage, sms, email, sms_fallback (not on iMessage), "
                    "imessage_unchecked (availability checked when sent) or "
                    "imessage_unavailable (no SMS fallback text)"
                ),
                "stopResults": _RESULT,
                "stopped": serializers.CharField(),
                "branch": serializers.DictField(allow_null=True),
                "reply": serializers.CharField(),
            },
            many=True,
        ),
    },
)


def _results(results) -> list[dict]:
    return [
        {
            "ruleId": rule.id,
            "type": rule.type,
            "result": bool(outcome.result),
            "detail": outcome.detail,
        }
        for rule, outcome in results
    ]


def dry_run_body(run: DryRun) -> dict:
    return {
        "campaignId": run.campaign.pk,
        "leadId": run.lead.pk,
        "outcome": run.outcome,
        "reason": run.reason,
        "steps": [
            {
                "label": step.label,
                "kind": step.kind,
                "at": IsoDateTimeField().to_representation(step.at),
                "wait": step.wait,
                "text": step.text,
                "channel": step.channel,
                "stopResults": _results(step.stop_results),
                "stopped": step.stopped,
                "branch": None
                if step.kind != "branch" or step.stopped
                else {
                    "path": step.branch_path,
                    "type": step.branch_type,
                    "detail": step.branch_detail,
                    "results": _results(step.branch_results),
                },
                "reply": step.reply,
            }
            for step in run.steps
        ],
    }


class CampaignDryRunApi(WorkspaceAPIView):
    rate_limit_group = "campaigns"

    @extend_schema(
        request=DryRunInput,
        responses=DryRunOutput,
        summary="The path a lead would take through the campaign, without sending",
    )
    def post(self, request, campaign_id):
        data = validated(DryRunInput, request.data)
        run = dry_run(
            workspace=self.workspace,
            campaign_id=campaign_id,
            lead_id=data["leadId"],
            replies=[PlayedReply(r["afterMessage"], r["text"]) for r in data.get("replies", [])],
        )
        return Response(dry_run_body(run))
