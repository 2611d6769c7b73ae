from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from leads import selectors, services
from leads.api.serializers import (
    LeadInput,
    LeadListOutput,
    LeadOutput,
    LeadRowsField,
    StrictCharField,
)
from leads.tags import lead_tags_change
from tuco.api.fields import PaginationOutput
from tuco.api.pagination import PageQuery
from tuco.api.validation import validated
from tuco.api.views import WorkspaceAPIView
from tuco.errors import ValidationFailed

MAX_PAGE_SIZE = 200


def _lead_body(lead) -> dict:
    return LeadOutput(lead).data


class LeadsApi(WorkspaceAPIView):
    """`/api/leads`: upload (POST), fetch one or a page (GET), bulk delete (DELETE)."""

    idempotent_post = True

    class CreateInput(serializers.Serializer):
        leads = LeadRowsField(allow_empty=False)
        listId = serializers.CharField(required=False, allow_null=True, allow_blank=True)  # noqa: N815
        source = serializers.CharField(
            required=False, allow_blank=True, allow_null=True, max_length=100
        )
        defaultCountryCode = serializers.CharField(  # noqa: N815
            required=False, allow_blank=True, allow_null=True, max_length=8
        )

        def validate_leads(self, value):
            cap = settings.LEADS_MAX_PER_REQUEST
            if len(value) > cap:
                raise serializers.ValidationError(f"At most {cap} leads per request.")
            return value

    class CreateOutput(serializers.Serializer):
        message = serializers.CharField()
        savedCount = serializers.IntegerField()  # noqa: N815
        duplicateCount = serializers.IntegerField()  # noqa: N815
        linkedCount = serializers.IntegerField()  # noqa: N815
        totalProcessed = serializers.IntegerField()  # noqa: N815
        listId = serializers.CharField()  # noqa: N815
        leadIds = serializers.ListField(child=serializers.CharField())  # noqa: N815

    class QueryInput(PageQuery):
        MAX_LIMIT = MAX_PAGE_SIZE
        id = serializers.CharField(required=False)
        search = serializers.CharField(required=False, allow_blank=True)
        listId = serializers.CharField(required=False, allow_blank=True)  # noqa: N815
        availabilityStatus = serializers.ChoiceField(  # noqa: N815
            choices=selectors.Lead.Availability.values, required=False
        )
        tag = serializers.CharField(
            required=False, allow_blank=True, max_length=100, help_text="Leads with this tag"
        )

    class DeleteInput(serializers.Serializer):
        ids = serializers.ListField(child=serializers.CharField(), max_length=10_000)

    @extend_schema(
        request=CreateInput,
        responses={201: CreateOutput, 200: CreateOutput},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        summary="Upload one or many leads into a list",
    )
    def post(self, request):
        data = self.CreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        lead_list = None
        if values.get("listId"):
            lead_list = selectors.lead_list_get(workspace=self.workspace, list_id=values["listId"])
        result = services.lead_import(
            workspace=self.workspace,
            rows=values["leads"],
            lead_list=lead_list,
            source=values.get("source") or "",
            default_country_code=values.get("defaultCountryCode") or None,
        )
        body = {
            "message": "Leads saved successfully",
            "savedCount": result.saved_count,
            "duplicateCount": result.duplicate_count,
            "linkedCount": result.linked_count,
            "totalProcessed": result.total_processed,
            "listId": result.list_id,
            "leadIds": result.lead_ids,
        }
        code = status.HTTP_201_CREATED if result.saved_count else status.HTTP_200_OK
        return Response(body, status=code)

    @extend_schema(
        parameters=[QueryInput],
        responses=inline_serializer(
            "LeadsPage",
            {
                "lead": LeadOutput(required=False),
                "leads": LeadOutput(many=True, required=False),
                "lists": LeadListOutput(many=True, required=False),
                "pagination": PaginationOutput(required=False),
            },
        ),
        summary="One lead (?id=) or a page of leads",
    )
    def get(self, request):
        query = self.QueryInput(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if "id" in params:
            lead = selectors.lead_get(workspace=self.workspace, lead_id=params["id"])
            return Response({"lead": _lead_body(lead)})
        page = selectors.lead_search(
            workspace=self.workspace,
            search=params.get("search", ""),
            list_id=params.get("listId") or None,
            availability=params.get("availabilityStatus"),
            tag=params.get("tag") or None,
            page=params["page"],
            limit=params["limit"],
        )
        lists = selectors.lead_lists_with_counts(workspace=self.workspace)
        return Response(
            {
                "leads": LeadOutput(page.items, many=True).data,
                "lists": LeadListOutput(lists, many=True).data,
                "pagination": {
                    "page": page.page,
                    "limit": page.limit,
                    "totalCount": page.total_count,
                    "totalPages": page.total_pages,
                },
            }
        )

    @extend_schema(
        request=DeleteInput,
        responses=inline_serializer("LeadsDeleted", {"deletedCount": serializers.IntegerField()}),
        summary="Delete several leads",
    )
    def delete(self, request):
        data = self.DeleteInput(data=request.data)
        data.is_valid(raise_exception=True)
        count = services.lead_delete(workspace=self.workspace, lead_ids=data.validated_data["ids"])
        return Response({"deletedCount": count})


class LeadDetailApi(WorkspaceAPIView):
    """`/api/leads/{id}`."""

    class UpdateInput(LeadInput):
        defaultCountryCode = serializers.CharField(  # noqa: N815
            required=False, allow_blank=True, allow_null=True, max_length=8
        )

    @extend_schema(responses=inline_serializer("LeadEnvelope", {"lead": LeadOutput()}))
    def get(self, request, lead_id):
        lead = selectors.lead_get(workspace=self.workspace, lead_id=lead_id)
        return Response({"lead": _lead_body(lead)})

    @extend_schema(
        request=UpdateInput,
        responses=inline_serializer("LeadUpdated", {"lead": LeadOutput()}),
        summary="Change a lead's fields (409 when a phone or email belongs to another lead)",
    )
    def patch(self, request, lead_id):
        lead = selectors.lead_get(workspace=self.workspace, lead_id=lead_id)
        if not isinstance(request.data, dict):
            raise ValidationFailed("Expected a JSON object")
        data = self.UpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        country = values.pop("defaultCountryCode", None) or None
        lead = services.lead_update(
            workspace=self.workspace, lead=lead, default_country_code=country, **values
        )
        selectors.attach_list_ids([lead])
        selectors.attach_tags([lead])
        return Response({"lead": _lead_body(lead)})

    @extend_schema(
        request=UpdateInput,
        responses=inline_serializer("LeadReplaced", {"lead": LeadOutput()}),
        summary="Same as PATCH",
    )
    def put(self, request, lead_id):
        return self.patch(request, lead_id)

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "LeadDeleted",
            {"success": serializers.BooleanField(), "deletedCount": serializers.IntegerField()},
        ),
    )
    def delete(self, request, lead_id):
        lead = selectors.lead_get(workspace=self.workspace, lead_id=lead_id)
        count = services.lead_delete(workspace=self.workspace, lead_ids=[lead.pk])
        return Response({"success": True, "deletedCount": count})


class ListsApi(WorkspaceAPIView):
    """`/api/lists`."""

    class CreateInput(serializers.Serializer):
        name = serializers.CharField(max_length=200)

    @extend_schema(
        responses=inline_serializer("LeadLists", {"lists": LeadListOutput(many=True)}),
        summary="The workspace's lists with lead counts",
    )
    def get(self, request):
        lists = selectors.lead_lists_with_counts(workspace=self.workspace)
        return Response({"lists": LeadListOutput(lists, many=True).data})

    @extend_schema(
        request=CreateInput,
        responses={201: inline_serializer("LeadListCreated", {"list": LeadListOutput()})},
        summary="Create a list",
    )
    def post(self, request):
        data = self.CreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        lead_list = services.lead_list_create(
            workspace=self.workspace, name=data.validated_data["name"]
        )
        lead_list.lead_count = 0
        return Response({"list": LeadListOutput(lead_list).data}, status=status.HTTP_201_CREATED)


class ListDetailApi(WorkspaceAPIView):
    """`/api/lists/{id}`; DELETE keeps the leads unless deleteLeads is true."""

    class UpdateInput(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)

    class DeleteInput(serializers.Serializer):
        deleteLeads = serializers.BooleanField(required=False, default=False)  # noqa: N815

    def _get(self, list_id):
        lead_list = selectors.lead_list_get(workspace=self.workspace, list_id=list_id)
        lead_list.lead_count = lead_list.memberships.count()
        return lead_list

    @extend_schema(responses=inline_serializer("LeadListEnvelope", {"list": LeadListOutput()}))
    def get(self, request, list_id):
        return Response({"list": LeadListOutput(self._get(list_id)).data})

    @extend_schema(
        request=UpdateInput,
        responses=inline_serializer("LeadListUpdated", {"list": LeadListOutput()}),
    )
    def patch(self, request, list_id):
        lead_list = self._get(list_id)
        data = self.UpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.lead_list_update(
            workspace=self.workspace, lead_list=lead_list, name=data.validated_data.get("name")
        )
        return Response({"list": LeadListOutput(lead_list).data})

    @extend_schema(
        request=DeleteInput,
        parameters=[OpenApiParameter("deleteLeads", bool, required=False)],
        responses=inline_serializer(
            "LeadListDeleted",
            {"success": serializers.BooleanField(), "deletedLeads": serializers.IntegerField()},
        ),
    )
    def delete(self, request, list_id):
        lead_list = selectors.lead_list_get(workspace=self.workspace, list_id=list_id)
        # The flag may come in the body or the query string; the same field validates both.
        source = request.data if isinstance(request.data, dict) else {}
        if "deleteLeads" not in source and "deleteLeads" in request.query_params:
            source = {"deleteLeads": request.query_params["deleteLeads"]}
        data = self.DeleteInput(data=source)
        data.is_valid(raise_exception=True)
        deleted = services.lead_list_delete(
            workspace=self.workspace,
            lead_list=lead_list,
            delete_leads=data.validated_data["deleteLeads"],
        )
        return Response({"success": True, "deletedLeads": deleted})


class LeadTagsApi(WorkspaceAPIView):
    """`/api/leads/{id}/tags` (ours): add and remove tags on one lead."""

    class ChangeInput(serializers.Serializer):
        add = serializers.ListField(
            child=StrictCharField(max_length=100), required=False, default=list, max_length=50
        )
        remove = serializers.ListField(
            child=StrictCharField(max_length=100), required=False, default=list, max_length=50
        )

        def validate(self, attrs):
            if not attrs["add"] and not attrs["remove"]:
                raise serializers.ValidationError("Give tags to add or remove")
            return attrs

    @extend_schema(
        request=ChangeInput,
        responses=inline_serializer("LeadTagsChanged", {"lead": LeadOutput()}),
        summary="Add and remove tags on a lead (added first, then removed)",
    )
    def post(self, request, lead_id):
        lead = selectors.lead_get(workspace=self.workspace, lead_id=lead_id)
        data = validated(self.ChangeInput, request.data)
        lead_tags_change(
            workspace=self.workspace, lead=lead, add=data["add"], remove=data["remove"]
        )
        lead = selectors.lead_get(workspace=self.workspace, lead_id=lead.pk)
        return Response({"lead": _lead_body(lead)})


class TagsApi(WorkspaceAPIView):
    """`/api/tags` (ours): the workspace's tags and how many leads have each."""

    class TagOutput(serializers.Serializer):
        _id = serializers.CharField(source="pk")
        name = serializers.CharField()
        leadCount = serializers.IntegerField(source="lead_count")  # noqa: N815

    @extend_schema(
        responses=inline_serializer("TagList", {"tags": TagOutput(many=True)}),
        summary="The workspace's tags",
    )
    def get(self, request):
        tags = selectors.tag_list(workspace=self.workspace)
        return Response({"tags": self.TagOutput(tags, many=True).data})
