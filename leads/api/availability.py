"""iMessage availability endpoints (API.md, "iMessage availability")."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from leads import availability
from leads.models import AvailabilityJob, Lead, LeadList
from tuco.api.fields import IsoDateTimeField
from tuco.api.validation import StrictTextField, validated
from tuco.api.views import WorkspaceAPIView
from tuco.errors import NotFound, ServiceError, ValidationFailed
from tuco.ids import looks_like_id

LEAD_NOT_FOUND = "Lead not found"
MAX_ADDRESSES = 100
ERROR = Lead.Availability.ERROR

_BUDGET = availability.MAX_SYNC_WAIT_SECONDS
NOT_CHECKED_NOTE = (
    f"One request waits at most {_BUDGET:.0f} s in total for the lines' gaps (a line asks "
    "its relay at most once every checkGapSeconds). What could not be asked within that "
    "time, or after the daily quota ran out, comes back per item with `available: false`, "
    '`status: "error"`, an `error` text and `code` `LINES_BUSY` or `QUOTA_EXHAUSTED`; '
    "answers already obtained are returned and cached, so repeating the request only "
    "asks about the rest. 429 only when the quota left nothing answered."
)


class AvailabilityView(WorkspaceAPIView):
    rate_limit_group = "availability"


def _lead_or_404(workspace, lead_id) -> Lead:
    lead = None
    if looks_like_id(lead_id):
        lead = Lead.objects.filter(workspace=workspace, pk=lead_id).first()
    if lead is None:
        raise ServiceError(LEAD_NOT_FOUND, status=404)
    return lead


class _NotCheckedFields(serializers.Serializer):
    """`error` and `code` appear only on an item that was not checked. `available` is
    a boolean, as published, also when the check failed (false then; `status:
    "error"` tells a failure from a "no")."""

    error = serializers.CharField(source="detail", required=False)
    code = serializers.CharField(required=False)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["available"] = bool(data["available"])
        extra = {key: data.pop(key) for key in ("error", "code")}
        if instance.code:
            data.update(extra)  # after the documented fields
        return data


class LeadResultOutput(_NotCheckedFields):
    leadId = serializers.CharField(source="lead_id")  # noqa: N815
    available = serializers.BooleanField()
    status = serializers.CharField()


@extend_schema_field(OpenApiTypes.BOOL)
class QueryFlagField(serializers.Field):
    """A query-string switch: "1", "true" or "yes" (any case) is on, anything else off."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("default", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> bool:
        return str(data).lower() in ("1", "true", "yes")

    def to_representation(self, value) -> bool:
        return bool(value)


class LeadCheckQuery(serializers.Serializer):
    id = StrictTextField(help_text="Lead id (required)")
    force = QueryFlagField()

    def validate_id(self, value: str) -> str:
        if not value:
            raise ServiceError("Lead ID is required")  # 400 without a code
        return value


NO_LEADS = "No leads found to check"


class LeadCheckInput(serializers.Serializer):
    """One address, or leads by `leadIds` (repeats dropped) or `listId`.

    An empty `address` is ignored, as published: the body then goes the leads way,
    which finds nothing to check (404) unless it names leads."""

    address = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    leadIds = serializers.ListField(  # noqa: N815
        child=serializers.CharField(max_length=64), required=False, max_length=100_000
    )
    listId = serializers.CharField(required=False, allow_blank=False, max_length=64)  # noqa: N815
    force = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        if (attrs.get("address") or "").strip():
            return attrs
        if "leadIds" in attrs:
            attrs["leadIds"] = list(dict.fromkeys(attrs["leadIds"]))
            if not attrs["leadIds"]:
                raise ServiceError(NO_LEADS, status=404)
        elif "listId" not in attrs:
            raise ServiceError(NO_LEADS, status=404)
        return attrs


class AddressResultOutput(_NotCheckedFields):
    address = serializers.CharField()
    available = serializers.BooleanField()
    status = serializers.CharField()


class LeadCheckApi(AvailabilityView):
    @extend_schema(
        parameters=[LeadCheckQuery],
        responses=inline_serializer(
            "LeadAvailability",
            {
                "success": serializers.BooleanField(),
                "leadId": serializers.CharField(),
                "available": serializers.BooleanField(),
                "status": serializers.CharField(),
            },
        ),
        summary="Check one lead and record its availability",
        description="`success` is false when the check failed technically (`status: "
        '"error"`). ' + NOT_CHECKED_NOTE,
    )
    def get(self, request):
        query = validated(LeadCheckQuery, request.query_params)
        lead = _lead_or_404(self.workspace, query["id"])
        [result] = availability.availability_check_leads_now(
            workspace=self.workspace, leads=[lead], force=query["force"]
        )
        return Response({"success": result.status != ERROR, **LeadResultOutput(result).data})

    @extend_schema(
        request=LeadCheckInput,
        responses=inline_serializer(
            "LeadsAvailability",
            {
                "success": serializers.BooleanField(),
                "available": serializers.BooleanField(required=False),
                "address": serializers.CharField(required=False),
                "status": serializers.CharField(required=False),
                "checked": serializers.IntegerField(required=False),
                "successful": serializers.IntegerField(required=False),
                "errors": serializers.IntegerField(required=False),
                "results": LeadResultOutput(many=True, required=False),
                "processingMode": serializers.CharField(required=False),
                "message": serializers.CharField(required=False),
                "jobId": serializers.CharField(required=False),
            },
        ),
        summary="Check one address, or many leads (by ids or list)",
        description="With a non-empty `address`, `success` is false when the check failed "
        'technically (`status: "error"`). An empty `address` is ignored: without '
        '`leadIds` or `listId` that is 404 "No leads found to check". Synchronous '
        "batches: " + NOT_CHECKED_NOTE,
    )
    def post(self, request):
        data = LeadCheckInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        force = values["force"]
        address = values.get("address") or ""
        if address.strip():
            [result] = availability.availability_check_addresses(
                workspace=self.workspace, addresses=[address], force=force
            )
            return Response({"success": result.status != ERROR, **AddressResultOutput(result).data})
        lead_ids = self._lead_ids(values)
        if len(lead_ids) > settings.AVAILABILITY_SYNC_MAX_LEADS:
            job = availability.availability_job_create(
                workspace=self.workspace, lead_ids=lead_ids, force=force
            )
            return Response(
                {
                    "success": True,
                    "message": "Bulk availability check started in background",
                    "jobId": job.pk,
                    "checked": len(lead_ids),
                    "processingMode": "background",
                }
            )
        by_id = Lead.objects.filter(workspace=self.workspace, pk__in=lead_ids).in_bulk()
        results = availability.availability_check_leads_now(
            workspace=self.workspace, leads=[by_id[lead_id] for lead_id in lead_ids], force=force
        )
        errors = sum(1 for r in results if r.status == ERROR)
        return Response(
            {
                "success": True,
                "checked": len(results),
                "successful": len(results) - errors,
                "errors": errors,
                "results": LeadResultOutput(results, many=True).data,
                "processingMode": "synchronous",
            }
        )

    def _lead_ids(self, values) -> list[str]:
        if "leadIds" in values:
            wanted = values["leadIds"]
            valid = [lead_id for lead_id in wanted if looks_like_id(lead_id)]
            found = set(
                Lead.objects.filter(workspace=self.workspace, pk__in=valid).values_list(
                    "pk", flat=True
                )
            )
            if len(found) != len(wanted):
                # The one 404 text published for this operation.
                raise ServiceError(NO_LEADS, status=404)
            return wanted
        list_id = values["listId"]
        if not (
            looks_like_id(list_id)
            and LeadList.objects.filter(workspace=self.workspace, pk=list_id).exists()
        ):
            raise ServiceError("List not found", status=404)
        return list(
            Lead.objects.filter(workspace=self.workspace, memberships__lead_list_id=list_id)
            .order_by("created_at", "pk")
            .values_list("pk", flat=True)
        )


class JobOutput(serializers.Serializer):
    jobId = serializers.CharField(source="pk")  # noqa: N815
    status = serializers.CharField()
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    successful = serializers.IntegerField()
    errors = serializers.IntegerField()
    detail = serializers.CharField()
    startedAt = IsoDateTimeField(source="started_at", allow_null=True)  # noqa: N815
    finishedAt = IsoDateTimeField(source="finished_at", allow_null=True)  # noqa: N815
    resumeAt = IsoDateTimeField(source="resume_at", allow_null=True)  # noqa: N815
    createdAt = IsoDateTimeField(source="created_at")  # noqa: N815


def _job_or_404(workspace, job_id) -> AvailabilityJob:
    job = None
    if looks_like_id(job_id):
        job = AvailabilityJob.objects.filter(workspace=workspace, pk=job_id).first()
    if job is None:
        raise NotFound("Job not found")
    return job


class JobDetailApi(AvailabilityView):
    @extend_schema(responses=JobOutput, summary="Progress of a background availability check")
    def get(self, request, job_id):
        return Response(JobOutput(_job_or_404(self.workspace, job_id)).data)

    @extend_schema(responses={200: JobOutput}, summary="Cancel a background availability check")
    def delete(self, request, job_id):
        _job_or_404(self.workspace, job_id)
        availability.availability_job_cancel(workspace=self.workspace, job_id=job_id)
        return Response(JobOutput(_job_or_404(self.workspace, job_id)).data)


class JobCancelApi(AvailabilityView):
    @extend_schema(request=None, responses=JobOutput, summary="Cancel a background check")
    def post(self, request, job_id):
        return JobDetailApi.delete(self, request, job_id)


def _normalized(raw_addresses: list, label: str) -> list[str]:
    """Every address normalized, or ValidationFailed naming the first bad one as
    `label.index`."""
    normalized = []
    for index, raw in enumerate(raw_addresses):
        try:
            normalized.append(availability.normalize_address(raw))
        except ValidationFailed as exc:
            raise ValidationFailed(exc.message, field=f"{label}.{index}") from None
    return normalized


ADDRESS_REQUIRED = "Address parameter is required (phone or email)"
ADDRESSES_REQUIRED = "addresses array is required and must not be empty"
TOO_MANY_ADDRESSES = f"Maximum {MAX_ADDRESSES} addresses per request"


class AddressQuery(serializers.Serializer):
    address = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, default=""
    )

    def validate_address(self, value: str) -> str:
        if not value.strip():
            raise ServiceError(ADDRESS_REQUIRED)  # the published 400, without a code
        try:
            return availability.normalize_address(value)
        except ValidationFailed as exc:
            raise serializers.ValidationError(exc.message) from None


class AddressesInput(serializers.Serializer):
    """`address`, or `addresses` (normalized; a bad one is named `addresses.<index>`,
    or `address` when it is the only one). The published errors (none given, too
    many) are raised as they are."""

    address = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    addresses = serializers.JSONField(required=False, allow_null=True)
    force = serializers.BooleanField(required=False, default=False)

    def validate_addresses(self, value):
        if not isinstance(value, list) or not value:
            raise ServiceError(ADDRESSES_REQUIRED)
        if len(value) > MAX_ADDRESSES:
            raise ServiceError(TOO_MANY_ADDRESSES)
        if not all(isinstance(item, str) for item in value):
            raise serializers.ValidationError("Every address must be a string")
        return value

    def validate(self, attrs):
        if "addresses" in attrs:
            raw = attrs["addresses"]
        elif (attrs.get("address") or "").strip():
            raw = [attrs["address"]]
        else:
            raise ServiceError(ADDRESSES_REQUIRED)
        if len(raw) > 1:
            attrs["addresses"] = _normalized(raw, "addresses")
        else:
            attrs["addresses"] = [availability.normalize_address(raw[0])]
        return attrs


def _addresses_response(results) -> Response:
    # success: at least one address got an answer (for one address: it did not fail).
    answered = any(result.status != ERROR for result in results)
    return Response({"success": answered, "results": AddressResultOutput(results, many=True).data})


class AddressOutput(AddressResultOutput):
    success = serializers.SerializerMethodField()

    def get_success(self, result) -> bool:
        return result.status != ERROR

    def to_representation(self, instance):
        data = super().to_representation(instance)
        return {"success": data.pop("success"), **data}


_ADDRESS_RESULTS = inline_serializer(
    "AddressAvailability",
    {"success": serializers.BooleanField(), "results": AddressResultOutput(many=True)},
)
_ADDRESSES_NOTE = (
    "`success` is false when no address could be answered. Each result has `status` "
    '(available | unavailable | error); `available` is false for `status: "error"`. '
    + NOT_CHECKED_NOTE
)


class AddressCheckApi(AvailabilityView):
    @extend_schema(
        parameters=[AddressQuery],
        responses=AddressOutput,
        summary="Check one phone number or email address",
        description='`{"success", "available", "address"}`, with `status`; `success` is false '
        'when the check failed (`status: "error"`, `available: false`). ' + NOT_CHECKED_NOTE,
    )
    def get(self, request):
        address = validated(AddressQuery, request.query_params)["address"]
        [result] = availability.availability_check_addresses(
            workspace=self.workspace, addresses=[address]
        )
        return Response(AddressOutput(result).data)

    @extend_schema(
        request=AddressesInput,
        responses=_ADDRESS_RESULTS,
        summary="Check one address or up to 100",
        description=_ADDRESSES_NOTE,
    )
    def post(self, request):
        values = validated(AddressesInput, request.data)
        results = availability.availability_check_addresses(
            workspace=self.workspace, addresses=values["addresses"], force=values["force"]
        )
        return _addresses_response(results)


NO_ADDRESSES = "No phone or email addresses provided"
NOT_AVAILABLE = "Contact not available on iMessage"


class RoundRobinInput(serializers.Serializer):
    """A contact's phones and emails; blank ones are dropped, the rest normalized
    (a bad one is named by its index among the non-blank ones)."""

    phones = serializers.ListField(
        child=serializers.CharField(allow_blank=True), required=False, max_length=MAX_ADDRESSES
    )
    emails = serializers.ListField(
        child=serializers.CharField(allow_blank=True), required=False, max_length=MAX_ADDRESSES
    )

    def validate(self, attrs):
        phones = [p for p in attrs.get("phones", []) if p.strip()]
        emails = [e for e in attrs.get("emails", []) if e.strip()]
        if not phones and not emails:
            raise serializers.ValidationError(NO_ADDRESSES)
        try:
            addresses = _normalized(phones, "phones") + _normalized(emails, "emails")
        except ValidationFailed as exc:
            raise serializers.ValidationError({exc.field: exc.message}) from None
        return {"addresses": addresses}


def _round_robin_invalid(exc: ValidationFailed) -> ValidationFailed:
    # This endpoint's 400 bodies carry `available` and `reason` next to error and code.
    return ValidationFailed(
        exc.message, field=exc.field, extra={"available": False, "reason": exc.text}
    )


class RoundRobinCheckApi(AvailabilityView):
    @extend_schema(
        request=RoundRobinInput,
        responses=inline_serializer(
            "RoundRobinAvailability",
            {
                "available": serializers.BooleanField(),
                "reason": serializers.CharField(required=False),
                "address": serializers.CharField(required=False),
                "status": serializers.CharField(required=False),
                "detail": serializers.CharField(required=False),
            },
        ),
        summary="Is a contact (any of its phones or emails) on iMessage?",
        description='`{"available": true}` or `{"available": false, "reason": "Contact '
        'not available on iMessage"}`. When an address could not be checked (a relay '
        "failure, every line busy, the quota used up) and none was available, the "
        'negative answer also carries `"status": "error"` and a `detail`, so the '
        "contact may be retried. A bad body is 400 with `available: false`, `reason`, "
        "`error` and `code`.",
    )
    def post(self, request):
        try:
            values = validated(RoundRobinInput, request.data)
        except ValidationFailed as exc:
            raise _round_robin_invalid(exc) from None
        results = availability.availability_check_addresses(
            workspace=self.workspace, addresses=values["addresses"], stop_at_available=True
        )
        for result in results:
            if result.available:
                return Response({"available": True, "address": result.address})
        body = {"available": False, "reason": NOT_AVAILABLE}
        failed = [result for result in results if result.status == ERROR]
        if failed:
            body.update(status=str(ERROR), detail=failed[0].detail or "The check failed")
        return Response(body)
