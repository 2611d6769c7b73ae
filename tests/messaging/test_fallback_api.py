"""GET/PATCH /api/workspace/fallback-config and POST /api/fallback-sms."""

from urllib.parse import parse_qs

import pytest
import responses
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from messaging.models import FallbackConfig, Message
from tests.messaging.conftest import TWILIO_SID, twilio_ok

pytestmark = pytest.mark.django_db

FULL = {
    "enabled": True,
    "twilioAccountSid": TWILIO_SID,
    "twilioAuthToken": "secret-token",
    "twilioFromNumber": "(500) 555-0006",
    "sendFallbackSmsOnFailed": True,
}


def session_client(email):
    client = APIClient()
    client.force_login(get_user_model().objects.get(email=email))
    return client


def test_an_unset_config_reads_as_disabled(api):
    body = api.get("/api/workspace/fallback-config").json()
    assert body["enabled"] is False
    assert body["twilioAuthTokenSet"] is False
    assert "twilioAuthToken" not in body


def test_patch_saves_and_never_returns_the_token(api, acme):
    response = api.patch("/api/workspace/fallback-config", FULL, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert "twilioAuthToken" not in body
    assert "secret-token" not in response.content.decode()
    assert body["twilioAuthTokenSet"] is True
    assert body["twilioFromNumber"] == "+15005550006"
    assert body["sendFallbackSmsOnFailed"] is True
    config = FallbackConfig.objects.get(workspace=acme)
    assert config.twilio_auth_token == "secret-token"
    assert config.is_configured
    # A later PATCH without the token keeps it.
    api.patch("/api/workspace/fallback-config", {"enabled": False}, format="json")
    config.refresh_from_db()
    assert (config.enabled, config.twilio_auth_token) == (False, "secret-token")


def test_enabling_an_incomplete_config_is_refused(api, acme):
    response = api.patch("/api/workspace/fallback-config", {"enabled": True}, format="json")
    assert response.status_code == 400
    assert not FallbackConfig.objects.filter(workspace=acme, enabled=True).exists()


def test_only_owners_and_admins_may_change_it(acme, alice, bob):
    member = session_client("bob@acme.test")
    assert member.get("/api/workspace/fallback-config").status_code == 200
    response = member.patch("/api/workspace/fallback-config", FULL, format="json")
    assert response.status_code == 403
    owner = session_client("alice@acme.test")
    assert owner.patch("/api/workspace/fallback-config", FULL, format="json").status_code == 200


def test_fallback_sms_needs_a_config(api):
    response = api.post("/api/fallback-sms", {"to": "+14155550102", "message": "Hi"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "FALLBACK_NOT_CONFIGURED"


def test_fallback_sms_is_queued_and_sent_through_twilio(
    api, twilio, django_capture_on_commit_callbacks
):
    with responses.RequestsMock() as rsps:
        twilio_ok(rsps, sid="SMapi")
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post(
                "/api/fallback-sms",
                {"to": "415 555 0102", "message": "Direct"},
                format="json",
                HTTP_IDEMPOTENCY_KEY="fb-1",
            )
        assert response.status_code == 201
        assert parse_qs(rsps.calls[0].request.body)["To"] == ["+14155550102"]
    body = response.json()
    assert body == {"success": True, "messageId": body["messageId"], "status": "pending"}
    message = Message.objects.get(pk=body["messageId"])
    assert (message.message_type, message.status, message.external_message_id) == (
        "sms", "sent", "SMapi",
    )  # fmt: skip
    again = api.post(
        "/api/fallback-sms",
        {"to": "415 555 0102", "message": "Direct"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="fb-1",
    )
    assert again.json() == body
    assert Message.objects.count() == 1


def test_fallback_sms_rejects_a_bad_number(api, twilio):
    response = api.post("/api/fallback-sms", {"to": "12", "message": "Hi"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "to: '12' is not a valid phone number"
    assert Message.objects.count() == 0
