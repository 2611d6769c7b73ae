from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from messaging import selectors, services
from tuco.api.auth import CanManageWorkspace
from tuco.api.views import WorkspaceAPIView


class FallbackConfigOutput(serializers.Serializer):
    enabled = serializers.BooleanField()
    twilioAccountSid = serializers.CharField()  # noqa: N815
    twilioAuthTokenSet = serializers.BooleanField()  # noqa: N815
    twilioFromNumber = serializers.CharField()  # noqa: N815
    sendFallbackSmsOnFailed = serializers.BooleanField()  # noqa: N815
    configured = serializers.BooleanField()


def config_body(config) -> dict:
    return {
        "enabled": config.enabled,
        "twilioAccountSid": config.twilio_account_sid,
        "twilioAuthTokenSet": bool(config.twilio_auth_token),
        "twilioFromNumber": config.twilio_from_number,
        "sendFallbackSmsOnFailed": config.send_fallback_sms_on_failed,
        "configured": config.is_configured,
    }


class FallbackConfigApi(WorkspaceAPIView):
    """`/api/workspace/fallback-config`: Twilio for SMS and fallback SMS."""

    class InputSerializer(serializers.Serializer):
        enabled = serializers.BooleanField(required=False)
        twilioAccountSid = serializers.CharField(  # noqa: N815
            required=False, allow_blank=True, max_length=64
        )
        twilioAuthToken = serializers.CharField(  # noqa: N815
            required=False, allow_blank=True, max_length=200, write_only=True
        )
        twilioFromNumber = serializers.CharField(  # noqa: N815
            required=False, allow_blank=True, max_length=32
        )
        sendFallbackSmsOnFailed = serializers.BooleanField(required=False)  # noqa: N815

    FIELDS = {
        "enabled": "enabled",
        "twilioAccountSid": "twilio_account_sid",
        "twilioAuthToken": "twilio_auth_token",
        "twilioFromNumber": "twilio_from_number",
        "sendFallbackSmsOnFailed": "send_fallback_sms_on_failed",
    }

    def get_permissions(self):
        if self.request.method == "PATCH":
            return [CanManageWorkspace()]
        return super().get_permissions()

    @extend_schema(responses=FallbackConfigOutput, summary="The workspace's Twilio fallback")
    def get(self, request):
        return Response(config_body(selectors.fallback_config_get(workspace=self.workspace)))

    @extend_schema(
        request=InputSerializer,
        responses=FallbackConfigOutput,
        summary="Change the Twilio fallback (owners and admins)",
    )
    def patch(self, request):
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = {self.FIELDS[k]: v for k, v in data.validated_data.items()}
        config = services.fallback_config_update(workspace=self.workspace, **changes)
        return Response(config_body(config))


class FallbackSmsApi(WorkspaceAPIView):
    rate_limit_group = "fallback_sms"
    idempotent_post = True

    class InputSerializer(serializers.Serializer):
        to = serializers.CharField()
        message = serializers.CharField(max_length=1600)

    class OutputSerializer(serializers.Serializer):
        success = serializers.BooleanField()
        messageId = serializers.CharField()  # noqa: N815
        status = serializers.CharField()

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer},
        summary="Send an SMS through the workspace's Twilio number",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = services.fallback_sms_submit(
            workspace=self.workspace,
            to=data.validated_data["to"],
            body=data.validated_data["message"],
        )
        return Response(
            {"success": True, "messageId": message.pk, "status": message.status},
            status=status.HTTP_201_CREATED,
        )
