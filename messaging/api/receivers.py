"""Callbacks from providers. Not authenticated by API key: the relay's callback URL
carries the line's unguessable token, and Twilio signs its requests with the
workspace's auth token. An unknown token or number answers 200 with nothing done, so
the provider stops retrying."""

import contextlib
import logging

from django.conf import settings
from django.db.models import Q
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from twilio.request_validator import RequestValidator

from leads.normalize import InvalidIdentifier, normalize_phone
from lines.models import Line, webhook_token_hash
from messaging import inbound
from messaging.models import FallbackConfig
from tuco.api.parsers import JSONParser
from tuco.errors import ServiceError

logger = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class ProviderCallbackView(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)


class RelayWebhookApi(ProviderCallbackView):
    """`POST /api/relay/{token}`: events from a line's relay (BlueBubbles webhooks)."""

    parser_classes = (JSONParser,)

    @extend_schema(
        summary="Relay event callback",
        request=inline_serializer(
            "RelayEvent", {"type": serializers.CharField(), "data": serializers.JSONField()}
        ),
        responses=inline_serializer("RelayEventAck", {"ok": serializers.BooleanField()}),
    )
    def post(self, request, token):
        # An inactive line's relay speaks for no one any more (an old URL, a Mac
        # handed on): its events are acknowledged and ignored, as an unknown token's.
        # Found by the token's hash, then compared in constant time.
        line = (
            Line.objects.filter(webhook_token_hash=webhook_token_hash(token), is_active=True)
            .select_related("workspace")
            .first()
        )
        if line is None or not line.webhook_token_matches(token):
            return Response({"ok": True})
        body = request.data if isinstance(request.data, dict) else {}
        event_type = body.get("type")
        if isinstance(event_type, str):
            inbound.relay_event_handle(line=line, event_type=event_type, data=body.get("data"))
        return Response({"ok": True})


def _twilio_url(request) -> str:
    # Twilio signs the URL it called, i.e. the public one, not what a proxy forwards.
    return settings.SITE_URL + request.get_full_path()


def _twilio_params(request) -> dict:
    return {key: request.POST.get(key) for key in request.POST}


def _twilio_workspace(request, params: dict, *, by_number: str):
    """The workspace whose Twilio auth token signed this request.

    Candidates are the configs with our number (`To` for inbound, `From` for status
    callbacks) or the account SID; the signature decides. None when no config matches
    at all (unknown number: acknowledged, nothing done); 403 for a bad signature.
    """
    match = Q()
    number = params.get(by_number) or ""
    with contextlib.suppress(InvalidIdentifier):
        number = normalize_phone(number) if number else ""
    if number:
        match |= Q(twilio_from_number=number) | Q(twilio_from_number=params.get(by_number))
    if params.get("AccountSid"):
        match |= Q(twilio_account_sid=params["AccountSid"])
    if not match:
        return None
    configs = list(FallbackConfig.objects.filter(match).select_related("workspace"))
    if not configs:
        return None
    signature = request.headers.get("X-Twilio-Signature", "")
    url = _twilio_url(request)
    for config in configs:
        if config.twilio_auth_token and RequestValidator(config.twilio_auth_token).validate(
            url, params, signature
        ):
            return config.workspace
    raise ServiceError("Invalid Twilio signature", code="INVALID_SIGNATURE", status=403)


class TwilioInboundApi(ProviderCallbackView):
    """`POST /api/webhooks/twilio/inbound`: an SMS to one of our Twilio numbers."""

    parser_classes = (FormParser, MultiPartParser)

    @extend_schema(summary="Twilio inbound SMS", request=None, responses={(200, "text/xml"): str})
    def post(self, request):
        params = _twilio_params(request)
        workspace = _twilio_workspace(request, params, by_number="To")
        if workspace is not None:
            inbound.twilio_inbound(workspace=workspace, params=params)
        return HttpResponse(EMPTY_TWIML, content_type="text/xml")


class TwilioStatusApi(ProviderCallbackView):
    """`POST /api/webhooks/twilio/status`: delivery status of an SMS we sent."""

    parser_classes = (FormParser, MultiPartParser)

    @extend_schema(
        summary="Twilio status callback",
        request=None,
        responses=inline_serializer("TwilioStatusAck", {"ok": serializers.BooleanField()}),
    )
    def post(self, request):
        params = _twilio_params(request)
        workspace = _twilio_workspace(request, params, by_number="From")
        if workspace is not None:
            inbound.twilio_status(workspace=workspace, params=params)
        return Response({"ok": True})
