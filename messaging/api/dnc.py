from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from messaging.dnc import dnc_list, dnc_remove
from messaging.services import dnc_add
from tuco.api.fields import IsoDateTimeField
from tuco.api.pagination import PageQuery
from tuco.api.views import WorkspaceAPIView

MAX_PAGE_SIZE = 100


class DncOutput(serializers.Serializer):
    _id = serializers.CharField(source="pk")
    phone = serializers.SerializerMethodField()
    email = serializers.SerializerMethodField()
    value = serializers.CharField()
    kind = serializers.CharField()
    reason = serializers.CharField()
    source = serializers.CharField()
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815

    def get_phone(self, entry) -> str | None:
        return entry.value if entry.kind == "phone" else None

    def get_email(self, entry) -> str | None:
        return entry.value if entry.kind == "email" else None


class DncApi(WorkspaceAPIView):
    """`/api/dnc`: the do-not-contact list.

    POST of an address already on the list answers 200 with the existing entry
    (`alreadyExists: true`) instead of an error, so adding is safe to repeat.
    """

    idempotent_post = True

    class QueryInput(PageQuery):
        MAX_LIMIT = MAX_PAGE_SIZE
        search = serializers.CharField(required=False, allow_blank=True)

    class ListOutput(serializers.Serializer):
        entries = DncOutput(many=True)
        total = serializers.IntegerField()
        page = serializers.IntegerField()
        limit = serializers.IntegerField()
        totalPages = serializers.IntegerField()  # noqa: N815

    class CreateInput(serializers.Serializer):
        phone = serializers.CharField(required=False, allow_blank=True, max_length=64)
        email = serializers.CharField(required=False, allow_blank=True, max_length=254)
        reason = serializers.CharField(required=False, allow_blank=True, max_length=300)

    class CreateOutput(serializers.Serializer):
        success = serializers.BooleanField()
        entry = DncOutput()
        alreadyExists = serializers.BooleanField()  # noqa: N815
        cancelledCount = serializers.IntegerField()  # noqa: N815

    class DeleteInput(serializers.Serializer):
        id = serializers.CharField()

    class DeleteOutput(serializers.Serializer):
        success = serializers.BooleanField()

    @extend_schema(summary="Do-not-contact entries", parameters=[QueryInput], responses=ListOutput)
    def get(self, request):
        params = self.QueryInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        page, limit = params.validated_data["page"], params.validated_data["limit"]
        rows = dnc_list(workspace=self.workspace, search=params.validated_data.get("search", ""))
        total = rows.count()
        entries = list(rows[(page - 1) * limit : page * limit])
        return Response(
            {
                "entries": DncOutput(entries, many=True).data,
                "total": total,
                "page": page,
                "limit": limit,
                "totalPages": -(-total // limit),
            }
        )

    @extend_schema(
        summary="Add a phone or email to the do-not-contact list",
        request=CreateInput,
        responses={201: CreateOutput, 200: CreateOutput},
    )
    def post(self, request):
        body = self.CreateInput(data=request.data)
        body.is_valid(raise_exception=True)
        added = dnc_add(
            workspace=self.workspace,
            phone=body.validated_data.get("phone"),
            email=body.validated_data.get("email"),
            reason=body.validated_data.get("reason", ""),
        )
        return Response(
            {
                "success": True,
                "entry": DncOutput(added.entry).data,
                "alreadyExists": not added.created,
                "cancelledCount": len(added.cancelled_message_ids),
            },
            status=status.HTTP_201_CREATED if added.created else status.HTTP_200_OK,
        )

    @extend_schema(
        summary="Remove an entry (?id=)", parameters=[DeleteInput], responses={200: DeleteOutput}
    )
    def delete(self, request):
        params = self.DeleteInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        dnc_remove(workspace=self.workspace, entry_id=params.validated_data["id"])
        return Response({"success": True})
