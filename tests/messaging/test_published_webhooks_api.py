"""The Webhooks API run with the published pages' own examples (create-webhook.mdx,
list-webhooks.mdx, get-webhook.mdx, update-webhook.mdx, delete-webhook.mdx,
test-webhook.mdx): same requests, the published answers' fields, types and texts."""

import socket

import pytest
from django.utils import timezone

from messaging import delivery
from messaging.models import WebhookEndpoint
from messaging.webhook_delivery import endpoint_health_record
from tests.messaging.conftest import verify_signature

ALL_EVENTS = [
    "message.sent",
    "message.failed",
    "message.fallback",
    "message.reply",
    "message.opened",
]
# create-webhook.mdx, "All events" and "Replies only".
CREATE_ALL = {
    "url": "https://example.com/webhooks/tuco",
    "events": ALL_EVENTS,
    "name": "Production webhook",
}
CREATE_REPLIES = {
    "url": "https://example.com/webhooks/replies",
    "events": ["message.reply"],
    "name": "Reply listener",
    "description": "Forwards replies to Slack",
}
# The 201 answer of create-webhook.mdx.
CREATED = {
    "id": "680a1b2c3d4e5f6789012345",
    "secret": "dGhpcyBpcyBhIHNhbXBsZSBzZWNyZXQ=",
    "url": "https://example.com/webhooks/tuco",
    "events": ALL_EVENTS,
    "name": "Production webhook",
    "description": None,
    "createdAt": "2026-04-12T12:00:00.000Z",
    "warning": "Save this secret now. You will not be able to see it again.",
}
# The webhook object of list-webhooks.mdx and get-webhook.mdx.
WEBHOOK = {
    "id": "680a1b2c3d4e5f6789012345",
    "url": "https://example.com/webhooks/tuco",
    "events": ["message.sent", "message.failed", "message.reply"],
    "name": "Production webhook",
    "description": "Sends events to our CRM",
    "isActive": True,
    "lastTriggeredAt": "2026-04-12T10:30:00.000Z",
    "lastSuccessAt": "2026-04-12T10:30:00.000Z",
    "lastFailureAt": None,
    "failureCount": 0,
    "createdAt": "2026-03-01T00:00:00.000Z",
    "updatedAt": "2026-04-12T10:30:00.000Z",
}


@pytest.fixture
def example_dns(monkeypatch):
    """example.com and its subdomains resolve to a public address, offline."""
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host == "example.com" or host.endswith(".example.com"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


# The fields the published schema (openapi.json's WebhookObject) marks nullable.
NULLABLE = {"description", "lastTriggeredAt", "lastSuccessAt", "lastFailureAt"}


def assert_published_types(ours: dict, published: dict) -> None:
    """Every published field is present with the published type (or null where the
    published schema allows it)."""
    for name, value in published.items():
        assert name in ours, name
        if value is None or (name in NULLABLE and ours[name] is None):
            continue
        assert type(ours[name]) is type(value), (name, ours[name])


def test_create_answers_201_with_the_secret_once_and_the_warning(api, example_dns):
    response = api.post("/api/webhooks", CREATE_ALL, format="json")
    assert response.status_code == 201
    body = response.json()
    assert_published_types(body, CREATED)
    assert body["url"] == CREATED["url"]
    assert body["events"] == CREATED["events"]
    assert body["name"] == CREATED["name"]
    assert body["description"] is None
    assert body["warning"] == CREATED["warning"]
    assert body["createdAt"].endswith("Z")

    replies = api.post("/api/webhooks", CREATE_REPLIES, format="json").json()
    assert replies["description"] == "Forwards replies to Slack"
    assert replies["events"] == ["message.reply"]


def test_list_and_get_show_the_published_object_without_the_secret(api, acme, example_dns):
    first = api.post("/api/webhooks", CREATE_ALL, format="json").json()
    second = api.post("/api/webhooks", CREATE_REPLIES, format="json").json()
    listed = api.get("/api/webhooks")
    assert listed.status_code == 200
    webhooks = listed.json()["webhooks"]
    # Newest first.
    assert [w["id"] for w in webhooks] == [second["id"], first["id"]]
    for item in webhooks:
        assert_published_types(item, WEBHOOK)
        assert "secret" not in item
    one = api.get(f"/api/webhooks/{first['id']}").json()
    assert_published_types(one, WEBHOOK)
    assert "secret" not in one
    assert one["isActive"] is True
    assert (one["lastTriggeredAt"], one["lastSuccessAt"], one["lastFailureAt"]) == (None,) * 3
    assert one["failureCount"] == 0
    assert one["description"] is None


def test_delivery_health_is_shown_as_published(api, acme, example_dns):
    created = api.post("/api/webhooks", CREATE_ALL, format="json").json()
    earlier = timezone.now()
    endpoint_health_record(endpoint_id=created["id"], ok=False, now=earlier)
    endpoint_health_record(endpoint_id=created["id"], ok=False, now=earlier)
    failing = api.get(f"/api/webhooks/{created['id']}").json()
    assert failing["failureCount"] == 2
    assert failing["lastFailureAt"] == failing["lastTriggeredAt"]
    assert failing["lastSuccessAt"] is None
    endpoint_health_record(endpoint_id=created["id"], ok=True, now=timezone.now())
    healthy = api.get(f"/api/webhooks/{created['id']}").json()
    assert healthy["failureCount"] == 0
    assert healthy["lastSuccessAt"] == healthy["lastTriggeredAt"]
    assert healthy["lastFailureAt"] == failing["lastFailureAt"]


@pytest.mark.parametrize(
    "change",
    [
        {"isActive": False},
        {"url": "https://new-endpoint.example.com/webhooks"},
        {"events": ["message.reply", "message.opened"]},
    ],
)
def test_update_examples_answer_success_and_change_only_what_is_given(api, example_dns, change):
    created = api.post("/api/webhooks", CREATE_ALL, format="json").json()
    response = api.patch(f"/api/webhooks/{created['id']}", change, format="json")
    assert response.status_code == 200
    assert response.json() == {"success": True}
    after = api.get(f"/api/webhooks/{created['id']}").json()
    expected = {**{k: created[k] for k in ("url", "events", "name")}, "isActive": True}
    expected.update(change)
    assert {k: after[k] for k in expected} == expected


def test_delete_answers_success_and_the_webhook_is_gone(api, example_dns):
    created = api.post("/api/webhooks", CREATE_ALL, format="json").json()
    response = api.delete(f"/api/webhooks/{created['id']}")
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert not WebhookEndpoint.objects.filter(pk=created["id"]).exists()
    missing = api.delete(f"/api/webhooks/{created['id']}")
    assert missing.status_code == 404
    assert missing.json()["error"] == "Webhook not found"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"events": ALL_EVENTS, "name": "x"}, "URL is required"),
        ({"url": "example", "events": ALL_EVENTS, "name": "x"}, "Invalid URL format"),
        ({"url": CREATE_ALL["url"], "events": [], "name": "x"},
         "At least one event must be selected"),
        ({"url": CREATE_ALL["url"], "events": ["message.invalid"], "name": "x"},
         "Invalid events: message.invalid"),
        ({"url": CREATE_ALL["url"], "events": ALL_EVENTS}, "Name is required"),
    ],
)  # fmt: skip
def test_create_errors_are_the_published_texts(api, example_dns, body, error):
    response = api.post("/api/webhooks", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_the_health_check_of_a_healthy_endpoint(api, acme, allow_private, receiver):
    receiver.answer = b"OK"
    created = api.post("/api/webhooks", {**CREATE_ALL, "url": receiver.url}, format="json").json()
    response = api.post(f"/api/webhooks/{created['id']}/health-check")
    assert response.status_code == 200
    body = response.json()
    published = {
        "success": True,
        "message": "Health check passed",
        "statusCode": 200,
        "response": "OK",
    }
    assert {k: body[k] for k in published} == published
    [request] = receiver.requests
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Tuco-Event"] == "message.sent"
    assert headers["X-Tuco-Timestamp"].endswith("Z")
    assert verify_signature(created["secret"], request)
    [event] = receiver.events()
    # The test payload of test-webhook.mdx.
    assert {k: event[k] for k in ("event", "workspaceId")} == {
        "event": "message.sent",
        "workspaceId": acme.pk,
    }
    assert event["timestamp"].endswith("Z")
    assert event["data"]["test"] is True
    assert event["data"]["message"] == "This is a health check test webhook from Tuco AI"


def test_the_health_check_of_an_endpoint_that_errs(api, allow_private, receiver):
    receiver.status, receiver.answer = 502, b"upstream connect error"
    created = api.post("/api/webhooks", {**CREATE_ALL, "url": receiver.url}, format="json").json()
    body = api.post(f"/api/webhooks/{created['id']}/health-check").json()
    published = {
        "success": False,
        "error": "HTTP 502: Bad Gateway",
        "details": "upstream connect error",
        "statusCode": 502,
    }
    assert {k: body[k] for k in published} == published


def test_the_health_check_of_an_endpoint_that_times_out(api, allow_private, receiver, monkeypatch):
    monkeypatch.setattr(delivery, "TIMEOUT_SECONDS", 0.2)
    receiver.delay = 1
    created = api.post("/api/webhooks", {**CREATE_ALL, "url": receiver.url}, format="json").json()
    body = api.post(f"/api/webhooks/{created['id']}/health-check").json()
    assert {k: body[k] for k in ("success", "error")} == {
        "success": False,
        "error": "The operation was aborted due to timeout",
    }
    assert "statusCode" not in body
