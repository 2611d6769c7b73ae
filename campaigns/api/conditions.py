"""Conditions in the API: the rule objects of stop conditions and branches, and
`POST /api/campaigns/evaluate-conditions`."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from campaigns.conditions import BRANCH_TYPES, MAX_HOURS, OPERATORS, STOP_TYPES, UNARY, Rule
from tuco.api.validation import validated
from tuco.api.views import WorkspaceAPIView


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]})
class ConditionValueField(serializers.Field):
    """What an API tool's answer is compared with: text, a number or true / false,
    kept as text."""

    default_error_messages = {"invalid": "Must be text, a number, true or false"}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return "true" if data else "false"
        if isinstance(data, int | float):
            return str(data)
        if isinstance(data, str):
            if len(data) > 500:
                raise serializers.ValidationError("Must be at most 500 characters")
            return data
        self.fail("invalid")

    def to_representation(self, value):
        return value


class RuleInput(serializers.Serializer):
    """One stop rule: `{id?, type, tag?, keyword?, toolId?, operator?, value?}`."""

    TYPES = STOP_TYPES

    id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    type = serializers.CharField()
    tag = serializers.CharField(required=False, allow_blank=True, max_length=100)
    keyword = serializers.CharField(required=False, allow_blank=True, max_length=200)
    toolId = serializers.CharField(required=False, allow_blank=True, max_length=64)  # noqa: N815
    operator = serializers.CharField(required=False, allow_blank=True)
    value = ConditionValueField(required=False, allow_null=True)
    hours = serializers.FloatField(required=False, allow_null=True)

    def validate_type(self, value: str) -> str:
        if value not in self.TYPES:
            raise serializers.ValidationError(f"Must be one of {', '.join(self.TYPES)}")
        return value

    def validate(self, attrs) -> Rule:
        kind = attrs["type"]
        if kind in ("tag_exists", "tag_not_exists") and not attrs.get("tag", "").strip():
            raise serializers.ValidationError({"tag": "This condition needs a tag"})
        if kind == "replied_keyword" and not attrs.get("keyword", "").strip():
            raise serializers.ValidationError({"keyword": "This condition needs a keyword"})
        operator = attrs.get("operator", "")
        if kind == "api_tool":
            if not attrs.get("toolId", "").strip():
                raise serializers.ValidationError({"toolId": "This condition needs an API tool"})
            if operator not in OPERATORS:
                raise serializers.ValidationError(
                    {"operator": f"Must be one of {', '.join(OPERATORS)}"}
                )
            if operator not in UNARY and attrs.get("value") in (None, ""):
                raise serializers.ValidationError({"value": "This operator needs a value"})
        hours = attrs.get("hours")
        if kind == "no_reply_for" and (hours is None or not 0 < hours <= MAX_HOURS):
            raise serializers.ValidationError(
                {"hours": f"Must be a number of hours above 0, at most {MAX_HOURS}"}
            )
        compared = kind == "api_tool" and operator not in UNARY
        return Rule(
            type=kind,
            id=attrs.get("id", ""),
            tag=attrs.get("tag", "").strip(),
            keyword=attrs.get("keyword", "").strip(),
            tool_id=attrs.get("toolId", "").strip() if kind == "api_tool" else "",
            operator=operator if kind == "api_tool" else "",
            value=(attrs.get("value") or "") if compared else "",
            hours=hours if kind == "no_reply_for" else None,
        )


class BranchConditionInput(RuleInput):
    """A branch's condition: a stop rule's types plus `no_reply_for` (with `hours`)
    and `default`."""

    TYPES = BRANCH_TYPES


# --------------------------------------------------------------------------- evaluate


class EvaluateInput(serializers.Serializer):
    leadId = serializers.CharField()  # noqa: N815
    stopRules = RuleInput(many=True, required=False)  # noqa: N815
    branchConditions = BranchConditionInput(many=True, required=False)  # noqa: N815


EvaluateOutput = inline_serializer(
    "EvaluateConditionsResult",
    {
        "stopResults": inline_serializer(
            "StopRuleResult",
            {
                "ruleId": serializers.CharField(),
                "type": serializers.CharField(),
                "result": serializers.BooleanField(),
                "detail": serializers.CharField(),
            },
            many=True,
        ),
        "branchResults": inline_serializer(
            "BranchConditionResult",
            {
                "type": serializers.CharField(),
                "result": serializers.BooleanField(),
                "detail": serializers.CharField(),
            },
            many=True,
        ),
    },
)


class EvaluateConditionsApi(WorkspaceAPIView):
    rate_limit_group = "campaigns"

    @extend_schema(
        request=EvaluateInput,
        responses=EvaluateOutput,
        summary="Evaluate stop rules and branch conditions against a lead, now",
    )
    def post(self, request):
        from campaigns.services import conditions_evaluate

        data = validated(EvaluateInput, request.data)
        result = conditions_evaluate(
            workspace=self.workspace,
            lead_id=data["leadId"],
            stop_rules=data.get("stopRules", []),
            branch_conditions=data.get("branchConditions", []),
        )
        return Response(
            {
                "stopResults": [
                    {
                        "ruleId": rule.id or str(i),
                        "type": rule.type,
                        "result": bool(outcome.result),
                        "detail": outcome.detail,
                    }
                    for i, (rule, outcome) in enumerate(result.stop)
                ],
                "branchResults": [
                    {"type": rule.type, "result": bool(outcome.result), "detail": outcome.detail}
                    for rule, outcome in result.branches
                ],
            }
        )
