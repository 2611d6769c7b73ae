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
from leads.models import Lead
from leads.selectors import NotFoundExact
from leads.tags import lead_tags_change
from tuco.api.fields import PaginationOutput, crm_ids_given
from tuco.api.pagination import PageQuery
from tuco.api.validation import validated
from tuco.api.views import WorkspaceAPIView
from tuco.errors import ServiceError, ValidationFailed
from tuco.ids import looks_like_id

MAX_PAGE_SIZE = 200
MAX_DELETE_IDS = 10_000
INVALID_LEAD_ID = "Invalid lead id"
LEAD_NOT_FOUND = "Lead not found"


def _lead_body(lead) -> dict:
    return LeadOutput(lead).data


LIST_NOT_FOUND = (
    "List not found. The specified listId does not exist or is invalid. "
    "Omit listId to use the Quick Sends list."
)
NO_IDS = "No ids provided"
INVALID_ID_IN_IDS = "Invalid lead id in ids array"


class DuplicateOutput(serializers.Serializer):
    input = serializers.DictField(help_text="The row as it was submitted")
    existingLead = LeadOutput()  # noqa: N815


def _duplicates(workspace, rows: list, duplicates: list[tuple[int, str]]) -> list[dict]:
    """{input, existingLead} for each duplicate row, the existing leads read at once."""
    leads = selectors.attach_tags(
        selectors.attach_list_ids(
            list(Lead.objects.filter(workspace=workspace, pk__in={i for _, i in duplicates}))
        )
    )
    # One serializer for them all: a serializer per lead copies its fields each time.
    existing = {document["_id"]: document for document in LeadOutput(leads, many=True).data}
    return [
        {"input": rows[index], "existingLead": existing[lead_id]}
        for index, lead_id in duplicates
        if lead_id in existing
    ]


class LeadsApi(WorkspaceAPIView):
    """`/api/leads`: upload (POST), fetch one or a page (GET), bulk delete (DELETE)."""

    idempotent_post = True

    class CreateInput(serializers.Serializer):
        leads = LeadRowsField(required=False, allow_empty=False)
        body = LeadRowsField(required=False, allow_empty=False, help_text="An alias of `leads`")
        listId = serializers.CharField(  # noqa: N815
            required=False,
            allow_null=True,
            allow_blank=True,
            help_text='Omit (or send "") to use the "Quick Sends" list',
        )
        source = serializers.CharField(
            required=False, allow_blank=True, allow_null=True, max_length=100
        )
        defaultCountryCode = serializers.CharField(  # noqa: N815
            required=False, allow_blank=True, allow_null=True, max_length=8
        )
        contactOwnerEmail = serializers.CharField(  # noqa: N815
            required=False,
            allow_blank=True,
            allow_null=True,
            help_text="Owner of the leads whose row names none (a workspace member's "
            "email; otherwise the workspace's first member)",
        )

        def validate(self, attrs):
            if "leads" not in attrs:
                if "body" not in attrs:
                    raise serializers.ValidationError({"leads": "This field is required."})
                attrs["leads"] = attrs.pop("body")
            cap = settings.LEADS_MAX_PER_REQUEST
            if len(attrs["leads"]) > cap:
                raise serializers.ValidationError({"leads": f"At most {cap} leads per request."})
            return attrs

    class CreateOutput(serializers.Serializer):
        message = serializers.CharField()
        savedCount = serializers.IntegerField()  # noqa: N815
        duplicateCount = serializers.IntegerField()  # noqa: N815
        linkedCount = serializers.IntegerField()  # noqa: N815
        totalProcessed = serializers.IntegerField()  # noqa: N815
        listId = serializers.CharField()  # noqa: N815
        leadId = serializers.CharField(allow_null=True)  # noqa: N815
        leadIds = serializers.ListField(child=serializers.CharField())  # noqa: N815
        leadListIds = serializers.ListField(child=serializers.CharField())  # noqa: N815
        duplicates = DuplicateOutput(
            many=True, required=False, help_text="Only when some of the rows were duplicates"
        )
        ghlContactId = serializers.CharField(allow_null=True)  # noqa: N815
        ghlLocationId = serializers.CharField(allow_null=True)  # noqa: N815
        hsPortalId = serializers.CharField(allow_null=True)  # noqa: N815
        hsContactId = serializers.CharField(allow_null=True)  # noqa: N815

    class DuplicateOnlyOutput(serializers.Serializer):
        message = serializers.CharField()
        duplicateOnly = serializers.BooleanField()  # noqa: N815
        savedCount = serializers.IntegerField()  # noqa: N815
        duplicateCount = serializers.IntegerField()  # noqa: N815
        linkedCount = serializers.IntegerField()  # noqa: N815
        totalProcessed = serializers.IntegerField()  # noqa: N815
        listId = serializers.CharField()  # noqa: N815
        leadId = serializers.CharField()  # noqa: N815
        existingLeadIds = serializers.ListField(child=serializers.CharField())  # noqa: N815
        leadIds = serializers.ListField(child=serializers.CharField())  # noqa: N815
        duplicates = DuplicateOutput(many=True)
        ghlContactId = serializers.CharField(allow_null=True)  # noqa: N815
        ghlLocationId = serializers.CharField(allow_null=True)  # noqa: N815
        hsPortalId = serializers.CharField(allow_null=True)  # noqa: N815
        hsContactId = serializers.CharField(allow_null=True)  # noqa: N815

    class QueryInput(PageQuery):
        MAX_LIMIT = MAX_PAGE_SIZE
        id = serializers.CharField(required=False, allow_blank=True)
        search = serializers.CharField(required=False, allow_blank=True)
        listId = serializers.CharField(required=False, allow_blank=True)  # noqa: N815
        availabilityStatus = serializers.ChoiceField(  # noqa: N815
            choices=selectors.Lead.Availability.values, required=False
        )
        tag = serializers.CharField(
            required=False, allow_blank=True, max_length=100, help_text="Leads with this tag"
        )

    class DeleteInput(serializers.Serializer):
        ids = serializers.JSONField(
            required=False, allow_null=True, help_text="Lead ids (an array of strings)"
        )

        def validate_ids(self, value):
            if not isinstance(value, list) or not value:
                raise ServiceError(NO_IDS)
            if len(value) > MAX_DELETE_IDS:
                raise ServiceError(f"At most {MAX_DELETE_IDS} ids per request")
            if not all(looks_like_id(lead_id) for lead_id in value):
                raise ServiceError(INVALID_ID_IN_IDS)
            return value

        def validate(self, attrs):
            if "ids" not in attrs:
                raise ServiceError(NO_IDS)
            return attrs

    @extend_schema(
        request=CreateInput,
        responses={201: CreateOutput, 200: DuplicateOnlyOutput},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        summary="Upload one or many leads into a list",
        description="201 when at least one lead was created; 200 with `duplicateOnly: true` "
        "and the existing leads' ids when every row was a duplicate.",
    )
    def post(self, request):
        values = validated(self.CreateInput, request.data)
        lead_list = None
        list_id = (values.get("listId") or "").strip()
        if list_id:
            try:
                lead_list = selectors.lead_list_get(workspace=self.workspace, list_id=list_id)
            except NotFoundExact:
                raise NotFoundExact(LIST_NOT_FOUND) from None
        rows = values["leads"]
        result = services.lead_import(
            workspace=self.workspace,
            rows=rows,
            lead_list=lead_list,
            source=values.get("source") or "",
            default_country_code=values.get("defaultCountryCode") or None,
            to_quick_sends=True,
            contact_owners=services.ContactOwners(
                self.workspace, default=values.get("contactOwnerEmail")
            ),
        )
        counts = {
            "savedCount": result.saved_count,
            "duplicateCount": result.duplicate_count,
            "linkedCount": result.linked_count,
            "totalProcessed": result.total_processed,
            "listId": result.list_id,
        }
        duplicates = _duplicates(self.workspace, rows, result.duplicates)
        raw = request.data if isinstance(request.data, dict) else {}
        raw_rows = raw.get("leads") or raw.get("body")
        first_row = raw_rows[0] if isinstance(raw_rows, list) and raw_rows else {}
        crm_ids = crm_ids_given(first_row, raw)
        if not result.saved_count:
            existing = [lead_id for _, lead_id in result.duplicates]
            plural = len(existing) > 1
            body = {
                "message": "Leads were duplicates; existing lead IDs returned."
                if plural
                else "Lead was a duplicate; existing lead ID returned.",
                "duplicateOnly": True,
                **counts,
                "leadId": existing[0] if existing else None,
                "existingLeadIds": existing,
                "leadIds": existing,
                "duplicates": duplicates,
                **crm_ids,
            }
            return Response(body, status=status.HTTP_200_OK)
        body = {
            "message": "Leads saved successfully",
            **counts,
            "leadId": result.lead_ids[0],
            "leadIds": result.lead_ids,
            "leadListIds": [result.list_id],
            **crm_ids,
        }
        if duplicates:
            body["duplicates"] = duplicates
        return Response(body, status=status.HTTP_201_CREATED)

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
        description='With `id`: `{"lead": ...}`; 400 "Invalid lead id" when it is not a '
        'lead id, 404 "Lead not found" when no lead of the workspace has it.',
    )
    def get(self, request):
        params = validated(self.QueryInput, request.query_params)
        lead_id = params.get("id") or ""
        if lead_id:
            if not looks_like_id(lead_id):
                raise ServiceError(INVALID_LEAD_ID)
            lead = selectors.lead_get(
                workspace=self.workspace, lead_id=lead_id, message=LEAD_NOT_FOUND
            )
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
        responses={
            200: inline_serializer("LeadsDeleted", {"deletedCount": serializers.IntegerField()})
        },
        summary="Delete several leads",
        description='400 "No ids provided" for a missing or empty `ids`, "Invalid lead id '
        'in ids array" when one is not a lead id; ids of no lead of the workspace are '
        "skipped. A lead's messages, replies, conversations and campaign enrollments go "
        "with it.",
    )
    def delete(self, request):
        values = validated(self.DeleteInput, request.data if isinstance(request.data, dict) else {})
        count = services.lead_delete(workspace=self.workspace, lead_ids=values["ids"])
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
        responses={
            200: inline_serializer(
                "LeadDeleted",
                {"success": serializers.BooleanField(), "deletedCount": serializers.IntegerField()},
            )
        },
    )
    def delete(self, request, lead_id):
        lead = selectors.lead_get(workspace=self.workspace, lead_id=lead_id)
        count = services.lead_delete(workspace=self.workspace, lead_ids=[lead.pk])
        return Response({"success": True, "deletedCount": count})


class ListDeleteFlag(serializers.Serializer):
    deleteLeads = serializers.BooleanField(required=False, default=False)  # noqa: N815


ListDeleted = inline_serializer(
    "LeadListDeleted",
    {"success": serializers.BooleanField(), "deletedLeads": serializers.IntegerField()},
)


def _delete_flag(request) -> bool:
    # The flag may come in the body or the query string; the same field validates both.
    source = request.data if isinstance(request.data, dict) else {}
    if "deleteLeads" not in source and "deleteLeads" in request.query_params:
        source = {"deleteLeads": request.query_params["deleteLeads"]}
    return validated(ListDeleteFlag, {"deleteLeads": source.get("deleteLeads", False)})[
        "deleteLeads"
    ]


def _list_delete(workspace, lead_list, delete_leads: bool) -> Response:
    deleted = services.lead_list_delete(
        workspace=workspace, lead_list=lead_list, delete_leads=delete_leads
    )
    return Response({"success": True, "deletedLeads": deleted})


class ListInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(
        max_length=500, required=False, allow_blank=True, allow_null=True
    )


class ListsApi(WorkspaceAPIView):
    """`/api/lists`; DELETE takes `{listId, deleteLeads}` in the body (the published
    form) and keeps the list's leads unless deleteLeads is true."""

    class DeleteInput(ListDeleteFlag):
        listId = serializers.CharField()  # noqa: N815

    @extend_schema(
        responses=inline_serializer("LeadLists", {"lists": LeadListOutput(many=True)}),
        summary="The workspace's lists with lead counts",
    )
    def get(self, request):
        lists = selectors.lead_lists_with_counts(workspace=self.workspace)
        return Response({"lists": LeadListOutput(lists, many=True).data})

    @extend_schema(
        request=ListInput,
        responses={201: inline_serializer("LeadListCreated", {"list": LeadListOutput()})},
        summary="Create a list",
    )
    def post(self, request):
        values = validated(ListInput, request.data)
        lead_list = services.lead_list_create(
            workspace=self.workspace,
            name=values["name"],
            description=values.get("description") or "",
        )
        lead_list.lead_count = 0
        return Response({"list": LeadListOutput(lead_list).data}, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=DeleteInput,
        responses={200: ListDeleted},
        summary="Delete a list (its leads too with deleteLeads: true)",
    )
    def delete(self, request):
        values = validated(self.DeleteInput, request.data if isinstance(request.data, dict) else {})
        lead_list = selectors.lead_list_get(workspace=self.workspace, list_id=values["listId"])
        return _list_delete(self.workspace, lead_list, values["deleteLeads"])


class ListDetailApi(WorkspaceAPIView):
    """`/api/lists/{id}`; DELETE keeps the leads unless deleteLeads is true."""

    class UpdateInput(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(
            max_length=500, required=False, allow_blank=True, allow_null=True
        )

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
        values = validated(self.UpdateInput, request.data)
        services.lead_list_update(
            workspace=self.workspace,
            lead_list=lead_list,
            name=values.get("name"),
            description=values.get("description"),
        )
        return Response({"list": LeadListOutput(lead_list).data})

    @extend_schema(
        request=ListDeleteFlag,
        parameters=[OpenApiParameter("deleteLeads", bool, required=False)],
        responses={200: ListDeleted},
    )
    def delete(self, request, list_id):
        lead_list = selectors.lead_list_get(workspace=self.workspace, list_id=list_id)
        return _list_delete(self.workspace, lead_list, _delete_flag(request))


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
