"""Our own schema (served at /api/schema/) says what the views do: for a simple,
successful request to every operation, the status that comes back is the one the
schema documents, with the content type it documents, and the body validates
against it. A DELETE that answers JSON is documented as 200 with that body, not as
a bodiless 204."""

import json
from urllib.parse import quote

import pytest
import responses
import schemathesis
from django.test import Client
from schemathesis.core.failures import Failure, FailureGroup

from tests.contract.published import as_schemathesis_response
from tests.messaging.conftest import twilio_ok

LEAD = "Ann"


def _dnc_entry(o) -> str:
    body = {"phone": "+14155550199", "reason": "asked"}
    return o.api.post("/api/dnc", body, format="json").json()["entry"]["_id"]


def _fallback(o):
    from messaging.models import FallbackConfig

    FallbackConfig.objects.create(
        workspace=o.workspace,
        enabled=True,
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="twilio-token",
        twilio_from_number="+15005550006",
    )


def _tool(o) -> str:
    from campaigns.models import ApiTool

    return ApiTool.objects.create(
        workspace=o.workspace,
        name="Status",
        variable_name="status",
        url="http://127.0.0.1:9/status",
        response_mapping="data.status",
    ).pk


def _line_body(o):
    return {"serverUrl": o.line.server_url, "password": "sim-secret", "firstName": "Bo"}


# (method, path) -> a simple request that succeeds: (url, body) from the objects.
REQUESTS = {
    ("GET", "/api/campaigns"): lambda o: ("/api/campaigns", None),
    ("POST", "/api/campaigns"): lambda o: (
        "/api/campaigns",
        {
            "name": "C",
            "steps": [{"message": "Hi", "delay": 0, "delayUnit": "minutes"}],
            "lineIds": [o.line.pk],
        },
    ),
    ("PUT", "/api/campaigns"): lambda o: (
        "/api/campaigns",
        {"campaignId": o.value("campaign_id"), "action": "start"},
    ),
    ("GET", "/api/campaigns/{campaign_id}"): lambda o: (
        f"/api/campaigns/{o.value('campaign_id')}",
        None,
    ),
    ("PATCH", "/api/campaigns/{campaign_id}"): lambda o: (
        f"/api/campaigns/{o.value('campaign_id')}",
        {"name": "Renamed"},
    ),
    ("POST", "/api/campaigns/{campaign_id}/enroll"): lambda o: (
        f"/api/campaigns/{o.value('campaign_id')}/enroll",
        {"leadId": o.value("lead_id")},
    ),
    ("POST", "/api/campaigns/{campaign_id}/leads"): lambda o: (
        f"/api/campaigns/{o.value('campaign_id')}/leads",
        {"leadId": o.value("lead_id")},
    ),
    ("GET", "/api/check-availability"): lambda o: (
        f"/api/check-availability?address=%2B14155550102&line={o.line.pk}",
        None,
    ),
    ("POST", "/api/check-availability"): lambda o: (
        (o.line, "/api/check-availability")[1],
        {"address": "+14155550102"},
    ),
    ("POST", "/api/check-availability-rr"): lambda o: (
        (o.line, "/api/check-availability-rr")[1],
        {"phones": ["+14155550102"]},
    ),
    ("GET", "/api/dnc"): lambda o: ("/api/dnc", None),
    ("POST", "/api/dnc"): lambda o: ("/api/dnc", {"phone": "+14155550199", "reason": "asked"}),
    ("DELETE", "/api/dnc"): lambda o: (f"/api/dnc?id={_dnc_entry(o)}", None),
    ("POST", "/api/fallback-sms"): lambda o: (
        (_fallback(o), "/api/fallback-sms")[1],
        {"to": "+14155550102", "message": "Hi"},
    ),
    ("GET", "/api/leads"): lambda o: ("/api/leads", None),
    ("POST", "/api/leads"): lambda o: (
        "/api/leads",
        {"leads": [{"firstName": LEAD, "email": "ann@example.com"}]},
    ),
    ("DELETE", "/api/leads"): lambda o: ("/api/leads", {"ids": [o.value("lead_id")]}),
    ("GET", "/api/leads/{lead_id}"): lambda o: (f"/api/leads/{o.value('lead_id')}", None),
    ("PUT", "/api/leads/{lead_id}"): lambda o: (
        f"/api/leads/{o.value('lead_id')}",
        {"firstName": LEAD},
    ),
    ("PATCH", "/api/leads/{lead_id}"): lambda o: (
        f"/api/leads/{o.value('lead_id')}",
        {"firstName": LEAD},
    ),
    ("DELETE", "/api/leads/{lead_id}"): lambda o: (f"/api/leads/{o.value('lead_id')}", None),
    ("GET", "/api/leads/check-availability"): lambda o: (
        (o.line, f"/api/leads/check-availability?id={o.value('lead_id')}")[1],
        None,
    ),
    ("POST", "/api/leads/check-availability"): lambda o: (
        (o.line, "/api/leads/check-availability")[1],
        {"leadIds": [o.value("lead_id")]},
    ),
    ("GET", "/api/leads/check-availability/jobs/{job_id}"): lambda o: (
        f"/api/leads/check-availability/jobs/{o.job_id}",
        None,
    ),
    ("DELETE", "/api/leads/check-availability/jobs/{job_id}"): lambda o: (
        f"/api/leads/check-availability/jobs/{o.job_id}",
        None,
    ),
    ("POST", "/api/leads/check-availability/jobs/{job_id}/cancel"): lambda o: (
        f"/api/leads/check-availability/jobs/{o.job_id}/cancel",
        None,
    ),
    ("GET", "/api/lines"): lambda o: ("/api/lines", None),
    ("POST", "/api/lines"): lambda o: ("/api/lines", _line_body(o)),
    ("GET", "/api/lines/{line_id}"): lambda o: (f"/api/lines/{o.value('line_id')}", None),
    ("PUT", "/api/lines/{line_id}"): lambda o: (
        f"/api/lines/{o.value('line_id')}",
        _line_body(o),
    ),
    ("PATCH", "/api/lines/{line_id}"): lambda o: (
        f"/api/lines/{o.value('line_id')}",
        {"firstName": "Bo"},
    ),
    ("DELETE", "/api/lines/{line_id}"): lambda o: (f"/api/lines/{o.value('line_id')}", None),
    ("GET", "/api/lines/by-user"): lambda o: ("/api/lines/by-user", None),
    ("GET", "/api/lines/check-availability"): lambda o: (
        f"/api/lines/check-availability?id={o.value('line_id')}",
        None,
    ),
    ("GET", "/api/health-check"): lambda o: ((o.line, "/api/health-check")[1], None),
    ("POST", "/api/health-check"): lambda o: ((o.line, "/api/health-check")[1], None),
    ("DELETE", "/api/lists"): lambda o: ("/api/lists", {"listId": o.value("list_id")}),
    ("GET", "/api/lists"): lambda o: ("/api/lists", None),
    ("POST", "/api/lists"): lambda o: ("/api/lists", {"name": "Spring fair"}),
    ("GET", "/api/lists/{list_id}"): lambda o: (f"/api/lists/{o.value('list_id')}", None),
    ("PATCH", "/api/lists/{list_id}"): lambda o: (
        f"/api/lists/{o.value('list_id')}",
        {"name": "Autumn fair"},
    ),
    ("DELETE", "/api/lists/{list_id}"): lambda o: (f"/api/lists/{o.value('list_id')}", None),
    ("GET", "/api/messages"): lambda o: ("/api/messages", None),
    ("POST", "/api/messages"): lambda o: (
        (o.line, "/api/messages")[1],
        {"message": "Hi", "leadId": o.value("lead_id")},
    ),
    ("GET", "/api/messages/{message_id}"): lambda o: (
        f"/api/messages/{o.value('message_id')}",
        None,
    ),
    ("POST", "/api/messages/cancel-for-lead"): lambda o: (
        "/api/messages/cancel-for-lead",
        {"leadId": o.value("lead_id")},
    ),
    ("POST", "/api/relay/{token}"): lambda o: (
        f"/api/relay/{o.value('token')}",
        {"type": "typing-indicator", "data": {}},
    ),
    ("GET", "/api/replies"): lambda o: ("/api/replies", None),
    ("GET", "/api/unibox/conversations"): lambda o: ("/api/unibox/conversations", None),
    ("GET", "/api/unibox/conversations/{conversation_id}/messages"): lambda o: (
        f"/api/unibox/conversations/{quote(o.value('conversation_id'))}/messages",
        None,
    ),
    ("POST", "/api/unibox/send-reply"): lambda o: (
        "/api/unibox/send-reply",
        {"conversationId": o.value("conversation_id"), "message": "Thanks!"},
    ),
    ("GET", "/api/webhooks"): lambda o: ("/api/webhooks", None),
    ("POST", "/api/webhooks"): lambda o: (
        "/api/webhooks",
        {"url": "http://127.0.0.1:9/h", "events": ["message.sent"], "name": "CRM"},
    ),
    ("GET", "/api/webhooks/{endpoint_id}"): lambda o: (
        f"/api/webhooks/{o.value('endpoint_id')}",
        None,
    ),
    ("PATCH", "/api/webhooks/{endpoint_id}"): lambda o: (
        f"/api/webhooks/{o.value('endpoint_id')}",
        {"name": "Renamed"},
    ),
    ("DELETE", "/api/webhooks/{endpoint_id}"): lambda o: (
        f"/api/webhooks/{o.value('endpoint_id')}",
        None,
    ),
    ("GET", "/api/webhooks/{endpoint_id}/deliveries"): lambda o: (
        f"/api/webhooks/{o.value('endpoint_id')}/deliveries",
        None,
    ),
    ("POST", "/api/webhooks/{endpoint_id}/health-check"): lambda o: (
        f"/api/webhooks/{o.value('endpoint_id')}/health-check",
        None,
    ),
    ("GET", "/api/workspace"): lambda o: ("/api/workspace", None),
    ("GET", "/api/campaign-tools"): lambda o: ("/api/campaign-tools", None),
    ("POST", "/api/campaign-tools"): lambda o: (
        "/api/campaign-tools",
        {
            "name": "Status",
            "method": "GET",
            "url": "http://127.0.0.1:9/status",
            "responseMapping": "data.status",
        },
    ),
    ("DELETE", "/api/campaign-tools"): lambda o: (f"/api/campaign-tools?id={_tool(o)}", None),
    ("POST", "/api/campaign-tools/test"): lambda o: (
        "/api/campaign-tools/test",
        {"toolId": _tool(o), "leadId": o.value("lead_id")},
    ),
    ("POST", "/api/campaigns/evaluate-conditions"): lambda o: (
        "/api/campaigns/evaluate-conditions",
        {"leadId": o.value("lead_id"), "stopRules": [{"type": "dnc"}], "branchConditions": []},
    ),
    ("POST", "/api/campaigns/{campaign_id}/dry-run"): lambda o: (
        f"/api/campaigns/{o.value('campaign_id')}/dry-run",
        {"leadId": o.value("lead_id")},
    ),
    ("POST", "/api/leads/{lead_id}/tags"): lambda o: (
        f"/api/leads/{o.value('lead_id')}/tags",
        {"add": ["vip"]},
    ),
    ("GET", "/api/tags"): lambda o: ("/api/tags", None),
    ("GET", "/api/lines/spam-monitor"): lambda o: ((o.line, "/api/lines/spam-monitor")[1], None),
    ("POST", "/api/lines/{line_id}/rotate-callback-token"): lambda o: (
        f"/api/lines/{o.value('line_id')}/rotate-callback-token",
        None,
    ),
    ("POST", "/api/lines/{line_id}/safety-override"): lambda o: (
        f"/api/lines/{o.value('line_id')}/safety-override",
        None,
    ),
    ("POST", "/api/lines/{line_id}/warmup"): lambda o: (
        f"/api/lines/{o.value('line_id')}/warmup",
        None,
    ),
    ("DELETE", "/api/lines/{line_id}/warmup"): lambda o: (
        f"/api/lines/{o.value('line_id')}/warmup",
        None,
    ),
    ("GET", "/api/workspace/fallback-config"): lambda o: ("/api/workspace/fallback-config", None),
    ("PATCH", "/api/workspace/fallback-config"): lambda o: (
        "/api/workspace/fallback-config",
        {"enabled": False},
    ),
}
# Provider callbacks answer their provider, signed form posts; tested with their
# receivers (tests/messaging/test_receivers.py).
NOT_HERE = {("POST", "/api/webhooks/twilio/inbound"), ("POST", "/api/webhooks/twilio/status")}


@pytest.fixture(scope="module")
def own_document(django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def _operations(document: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def test_every_operation_has_a_simple_request(own_document):
    assert _operations(own_document) - NOT_HERE == set(REQUESTS)


@pytest.mark.parametrize("key", sorted(REQUESTS), ids=[f"{m} {p}" for m, p in sorted(REQUESTS)])
def test_the_schema_documents_what_the_view_answers(
    key, own_document, objects, acme, django_capture_on_commit_callbacks, settings
):
    # Tools may be saved with a local URL, and lines warm up, so that those
    # operations succeed.
    settings.API_TOOLS_ALLOW_PRIVATE_TARGETS = True
    settings.LINE_WARMUP_DAYS = 14
    method, path = key
    client = Client(HTTP_AUTHORIZATION=f"Bearer {acme.raw_key}")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as twilio:
        twilio.add_passthru("http://127.0.0.1")
        twilio_ok(twilio)
        url, body = REQUESTS[key](objects)
        with django_capture_on_commit_callbacks(execute=True):
            data = b"" if body is None else json.dumps(body).encode()
            response = client.generic(method, url, data, content_type="application/json")
    label = f"{method} {path} -> {response.status_code}"
    assert 200 <= response.status_code < 300, f"{label}: {response.content[:300]!r}"

    documented = own_document["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in documented, (
        f"{label}: the schema documents {sorted(documented)}"
    )
    content = documented[str(response.status_code)].get("content") or {}
    media_type = response.get("Content-Type", "").split(";")[0]
    if response.content:
        assert media_type in content, f"{label}: answers {media_type}, documented {list(content)}"
    else:
        assert not content, f"{label}: answers no body, documented {list(content)}"

    schema = schemathesis.openapi.from_dict(own_document)
    converted = as_schemathesis_response(
        method, url, response.status_code, dict(response.items()), response.content
    )
    try:
        schema[path][method].validate_response(converted)
    except (Failure, FailureGroup) as exc:
        pytest.fail(f"{label}: the body does not match the schema: {exc}")
