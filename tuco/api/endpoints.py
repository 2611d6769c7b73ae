from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from tuco.api.views import WorkspaceAPIView


class WorkspaceOutput(serializers.Serializer):
    _id = serializers.CharField(source="pk")
    name = serializers.CharField()
    timezone = serializers.CharField()
    billingStatus = serializers.CharField(source="billing_status")  # noqa: N815


class WorkspaceDetailApi(WorkspaceAPIView):
    @extend_schema(responses=WorkspaceOutput, summary="The workspace the key belongs to")
    def get(self, request):
        return Response(WorkspaceOutput(self.workspace).data)
