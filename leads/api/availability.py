"""iMessage availability endpoints (API.md, "iMessage availability")."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from leads import availability
from leads.models import AvailabilityJob, Lead, LeadList
from tuco.api.fields import IsoDateTimeField
from tuco.api.views import WorkspaceAPIView
from tuco.errors import NotFound, ServiceError, ValidationFailed
from tuco.ids import looks_like_id

LEAD_NOT_FOUND = "Lead not found or access denied"
MAX_ADDRESSES = 100


class AvailabilityView(WorkspaceAPIView):
    rate_limit_group = "availability"


def _lead_or_404(workspace, lead_id) -> Lead:
    lead = None
    if looks_like_id(lead_id):
        lead = Lead.objects.filter(workspace=workspace, pk=lead_id).first()
    if lead is None:
        raise ServiceError(LEAD_NOT_FOUND, status=404)
    return lead


class LeadResultOutput(serializers.Serializer):
    leadId = serializers.CharField(source="lead_id")  # noqa: N815
    available = serializers.BooleanField(allow_null=True)
    status = serializers.CharField()


class LeadCheckInput(serializers.Serializer):
    address = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    leadIds = serializers.ListField(  # noqa: N815
        child=serializers.CharField(max_length=64), required=False, max_length=100_000
    )
    listId = serializers.CharField(required=False, allow_blank=False, max_length=64)  # noqa: N815
    force = serializers.BooleanField(required=False, default=False)


class LeadCheckApi(AvailabilityView):
    @extend_schema(
        parameters=[OpenApiParameter("id", str, required=True, description="Lead id")],
        responses=inline_serializer(
            "LeadAvailability",
            {
                "success": serializers.BooleanField(),
                "leadId": serializers.CharField(),
                "available": serializers.BooleanField(allow_null=True),
                "status": serializers.CharField(),
            },
        ),
        summary="Check one lead and record its availability",
    )
    def get(self, request):
        lead_id = request.query_params.get("id", "").strip()
        if not lead_id:
            raise ServiceError("Lead ID is required")
        lead = _lead_or_404(self.workspace, lead_id)
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        result = availability.availability_check_lead(
            workspace=self.workspace, lead=lead, force=force
        )
        return Response(
            {
                "success": True,
                "leadId": result.lead_id,
                "available": result.available,
                "status": result.status,
            }
        )

    @extend_schema(
        request=LeadCheckInput,
        responses=inline_serializer(
            "LeadsAvailability",
            {
                "success": serializers.BooleanField(),
                "available": serializers.BooleanField(required=False),
                "address": serializers.CharField(required=False),
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
    )
    def post(self, request):
        data = LeadCheckInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        force = values["force"]
        address = values.get("address") or ""
        if address.strip():
            result = availability.availability_check_address(
                workspace=self.workspace, address=address, force=force
            )
            return Response(
                {
                    "success": result.status != "error",
                    "available": result.available,
                    "address": result.address,
                    "status": result.status,
                }
            )
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
        leads = [by_id[lead_id] for lead_id in lead_ids]
        batch = availability.availability_check_leads(
            workspace=self.workspace, leads=leads, force=force
        )
        if batch.stopped is not None:
            raise batch.stopped
        results = batch.results
        errors = sum(1 for r in results if r.status == Lead.Availability.ERROR)
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
            wanted = list(dict.fromkeys(values["leadIds"]))
            if not wanted:
                raise ValidationFailed("leadIds: Provide at least one lead id")
            valid = [lead_id for lead_id in wanted if looks_like_id(lead_id)]
            found = set(
                Lead.objects.filter(workspace=self.workspace, pk__in=valid).values_list(
                    "pk", flat=True
                )
            )
            if len(found) != len(wanted):
                raise ServiceError(LEAD_NOT_FOUND, status=404)
            return wanted
        if "listId" in values:
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
        raise ValidationFailed("Provide a non-empty address, leadIds or listId")


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

    @extend_schema(responses=JobOutput, summary="Cancel a background availability check")
    def delete(self, request, job_id):
        _job_or_404(self.workspace, job_id)
        availability.availability_job_cancel(workspace=self.workspace, job_id=job_id)
        return Response(JobOutput(_job_or_404(self.workspace, job_id)).data)


class JobCancelApi(AvailabilityView):
    @extend_schema(request=None, responses=JobOutput, summary="Cancel a background check")
    def post(self, request, job_id):
        return JobDetailApi.delete(self, request, job_id)


class AddressResultOutput(serializers.Serializer):
    address = serializers.CharField()
    available = serializers.BooleanField(allow_null=True)
    status = serializers.CharField()


class AddressesInput(serializers.Serializer):
    address = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    addresses = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        max_length=MAX_ADDRESSES,
    )
    force = serializers.BooleanField(required=False, default=False)


def _check_addresses(workspace, raw_addresses, force=False) -> list:
    if not raw_addresses:
        raise ValidationFailed("address: A phone number or email address is required")
    normalized = []
    for index, raw in enumerate(raw_addresses):
        try:
            normalized.append(availability.normalize_address(raw))
        except ValidationFailed as exc:
            if len(raw_addresses) > 1:
                raise ValidationFailed(
                    exc.message.replace("address:", f"addresses.{index}:")
                ) from None
            raise
    return [
        availability.availability_check_address(workspace=workspace, address=address, force=force)
        for address in dict.fromkeys(normalized)
    ]


_ADDRESS_RESULTS = inline_serializer(
    "AddressAvailability",
    {"success": serializers.BooleanField(), "results": AddressResultOutput(many=True)},
)


class AddressCheckApi(AvailabilityView):
    @extend_schema(
        parameters=[OpenApiParameter("address", str, required=True)],
        responses=_ADDRESS_RESULTS,
        summary="Check one phone number or email address",
    )
    def get(self, request):
        results = _check_addresses(self.workspace, [request.query_params.get("address", "")])
        return Response({"success": True, "results": AddressResultOutput(results, many=True).data})

    @extend_schema(
        request=AddressesInput,
        responses=_ADDRESS_RESULTS,
        summary="Check one address or up to 100",
    )
    def post(self, request):
        data = AddressesInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        raw = values["addresses"] if "addresses" in values else [values.get("address", "")]
        results = _check_addresses(self.workspace, raw, force=values["force"])
        return Response({"success": True, "results": AddressResultOutput(results, many=True).data})


class RoundRobinInput(serializers.Serializer):
    phones = serializers.ListField(
        child=serializers.CharField(allow_blank=True), required=False, max_length=MAX_ADDRESSES
    )
    emails = serializers.ListField(
        child=serializers.CharField(allow_blank=True), required=False, max_length=MAX_ADDRESSES
    )


NO_ADDRESSES = "No phone or email addresses provided"
NOT_AVAILABLE = "Contact not available on iMessage"
UNDETERMINED = "Availability could not be determined"


class RoundRobinCheckApi(AvailabilityView):
    @extend_schema(
        request=RoundRobinInput,
        responses=inline_serializer(
            "RoundRobinAvailability",
            {
                "available": serializers.BooleanField(),
                "reason": serializers.CharField(required=False),
                "address": serializers.CharField(required=False),
            },
        ),
        summary="Is a contact (any of its phones or emails) on iMessage?",
    )
    def post(self, request):
        data = RoundRobinInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        raw = [p for p in values.get("phones", []) if p.strip()] + [
            e for e in values.get("emails", []) if e.strip()
        ]
        if not raw:
            raise ValidationFailed(NO_ADDRESSES, extra={"available": False, "reason": NO_ADDRESSES})
        addresses = []
        for value in raw:
            address = availability.normalize_address(value)
            if address not in addresses:
                addresses.append(address)
        undetermined = False
        for address in addresses:
            result = availability.availability_check_address(
                workspace=self.workspace, address=address
            )
            if result.available:
                return Response({"available": True, "address": address})
            undetermined = undetermined or result.status == "error"
        return Response(
            {"available": False, "reason": UNDETERMINED if undetermined else NOT_AVAILABLE}
        )
