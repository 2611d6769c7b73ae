"""`/api/campaign-tools`: the workspace's API tools (list, save, delete, test)."""

import json

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from campaigns import selectors, tools
from tuco.api.fields import IsoDateTimeField
from tuco.api.validation import StrictTextField, validated
from tuco.api.views import WorkspaceAPIView
from tuco.errors import ValidationFailed

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class ToolOutput(serializers.Serializer):
    id = serializers.CharField(source="pk")
    _id = serializers.CharField(source="pk")
    name = serializers.CharField()
    variable = serializers.CharField(help_text="The message variable, e.g. api_check_status")
    method = serializers.CharField()
    url = serializers.CharField()
    headers = serializers.SerializerMethodField(help_text="Values masked: never shown in full")
    body = serializers.CharField()
    responseMapping = serializers.CharField(source="response_mapping")  # noqa: N815
    description = serializers.CharField()
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815
    updatedAt = IsoDateTimeField(source="updated_at")  # noqa: N815

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_headers(self, tool) -> dict:
        return tools.masked_headers(tool)


@extend_schema_field(
    {"type": "string", "description": "Request body (JSON string); a JSON object is taken too"}
)
class BodyField(serializers.Field):
    """The request body: a JSON string, or (for convenience) the JSON object itself."""

    default_error_messages = {"invalid": "Must be a JSON string"}

    def to_internal_value(self, data):
        if isinstance(data, dict | list):
            return json.dumps(data)
        if not isinstance(data, str):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class ToolInput(serializers.Serializer):
    id = StrictTextField(max_length=24, help_text="Tool ID (for updates)")
    name = StrictTextField(required=True, allow_null=False, max_length=100)
    method = serializers.ChoiceField(
        choices=METHODS,
        error_messages={"invalid_choice": "Must be GET, POST, PUT, PATCH or DELETE"},
    )
    url = StrictTextField(required=True, allow_null=False, max_length=2000)
    headers = serializers.DictField(
        required=False, allow_null=True, child=serializers.JSONField(), help_text="HTTP headers"
    )
    body = BodyField(required=False, allow_null=True, default="")
    responseMapping = StrictTextField(  # noqa: N815
        required=True, allow_null=False, max_length=500
    )
    description = StrictTextField(max_length=2000)


class SaveOutput(serializers.Serializer):
    success = serializers.BooleanField()
    tool = ToolOutput()


class ListOutput(serializers.Serializer):
    success = serializers.BooleanField()
    tools = ToolOutput(many=True)


class DeleteQuery(serializers.Serializer):
    id = serializers.CharField(
        required=False, allow_blank=True, help_text="The tool to delete (required)"
    )


class DeleteOutput(serializers.Serializer):
    success = serializers.BooleanField()


class CampaignToolsApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="listWorkspaceTools",
        summary="List Workspace API Tools",
        responses=ListOutput,
    )
    def get(self, request):
        items = selectors.api_tool_list(workspace=self.workspace)
        return Response({"success": True, "tools": ToolOutput(items, many=True).data})

    @extend_schema(
        operation_id="createOrUpdateTool",
        summary="Create or Update API Tool (pass id to update)",
        request=ToolInput,
        responses=SaveOutput,
    )
    def post(self, request):
        data = validated(ToolInput, request.data)
        tool = tools.tool_save(
            workspace=self.workspace,
            tool_id=data["id"] or None,
            name=data["name"],
            method=data["method"],
            url=data["url"],
            response_mapping=data["responseMapping"],
            headers=data.get("headers"),
            body=data.get("body") or "",
            description=data["description"],
        )
        return Response({"success": True, "tool": ToolOutput(tool).data})

    @extend_schema(
        operation_id="deleteTool",
        summary="Delete API Tool (?id=)",
        parameters=[DeleteQuery],
        responses={200: DeleteOutput},
    )
    def delete(self, request):
        tool_id = request.query_params.get("id") or (
            request.data.get("id") if isinstance(request.data, dict) else None
        )
        if not tool_id:
            raise ValidationFailed("Tool ID is required", field="id")
        tools.tool_delete(workspace=self.workspace, tool_id=str(tool_id))
        return Response({"success": True})


class TestInput(serializers.Serializer):
    toolId = StrictTextField(  # noqa: N815
        required=True, allow_null=False, error_messages={"required": "Tool ID is required"}
    )
    leadId = StrictTextField(help_text="Optional: test with a specific lead's data")  # noqa: N815


class TestOutput(serializers.Serializer):
    success = serializers.BooleanField()
    value = serializers.JSONField(allow_null=True, help_text="The value at the response mapping")
    text = serializers.CharField(allow_null=True, help_text="The value as message text")
    error = serializers.CharField(allow_null=True)
    statusCode = serializers.IntegerField(allow_null=True)  # noqa: N815
    rawResponse = serializers.CharField(help_text="The answer's first 2,000 characters")  # noqa: N815
    durationMs = serializers.IntegerField()  # noqa: N815
    request = serializers.DictField()
    leadId = serializers.CharField(allow_null=True)  # noqa: N815


class CampaignToolTestApi(WorkspaceAPIView):
    @extend_schema(
        operation_id="testTool",
        summary="Test API Tool against a lead",
        request=TestInput,
        responses=TestOutput,
    )
    def post(self, request):
        data = validated(TestInput, request.data)
        result = tools.tool_test(
            workspace=self.workspace, tool_id=data["toolId"], lead_id=data["leadId"] or None
        )
        return Response(result)
