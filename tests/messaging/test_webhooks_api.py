import socket

import pytest

from messaging.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.messaging.conftest import verify_signature

EVENTS = ["message.sent", "message.reply"]


@pytest.fixture
def public_dns(monkeypatch):
    """Resolve hook.example.com to a public address without touching the network."""
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host == "hook.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]
        if host == "rebind.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def create(api, **body):
    payload = {"url": "https://hook.example.com/tuco", "events": EVENTS, "name": "CRM"}
    payload.update(body)
    return api.post("/api/webhooks", payload, format="json")


def test_it_creates_an_endpoint_and_shows_the_secret_once(api, public_dns):
    response = create(api, description="Sync replies")
    assert response.status_code == 201
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == EVENTS
    assert body["isActive"] is True
    assert body["description"] == "Sync replies"

    listed = api.get("/api/webhooks").json()["webhooks"]
    assert [w["id"] for w in listed] == [body["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in api.get(f"/api/webhooks/{body['id']}").json()


def test_it_rejects_unknown_events(api, public_dns):
    response = create(api, events=["message.sent", "message.exploded", "message.invalid"])
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert response.json()["error"] == "Invalid events: message.exploded, message.invalid"
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"url": None}, "URL is required"),
        ({"url": ""}, "URL is required"),
        ({"url": "not a url"}, "Invalid URL format"),
        ({"url": 42}, "Invalid URL format"),
        ({"events": []}, "At least one event must be selected"),
        ({"events": None}, "At least one event must be selected"),
        ({"events": "message.sent"}, "At least one event must be selected"),
        ({"name": ""}, "Name is required"),
        ({"name": None}, "Name is required"),
        # The published order: the URL first, then the events, then the name.
        ({"url": "", "events": [], "name": ""}, "URL is required"),
        ({"events": ["message.nope"], "name": ""}, "Invalid events: message.nope"),
    ],
)
def test_it_answers_the_published_validation_texts(api, public_dns, body, error):
    payload = {"url": "https://hook.example.com/tuco", "events": EVENTS, "name": "CRM"}
    payload.update(body)
    payload = {k: v for k, v in payload.items() if v is not None}
    response = api.post("/api/webhooks", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "https://rebind.example.com/hook",
        # NAT64 and 6to4 addresses carrying 10.0.0.1, 127.0.0.1 and 169.254.169.254
        "http://[64:ff9b::a00:1]/hook",
        "http://[64:ff9b::7f00:1]/hook",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        "http://[2002:a00:1::1]/hook",
        "http://[2002:7f00:1::]/hook",
        "http://[2002:a9fe:a9fe::1]/latest/meta-data",
        # IPv4-compatible (::a.b.c.d), IPv4-mapped and IPv4-translated addresses of
        # private IPv4 addresses
        "http://[::127.0.0.1]/hook",
        "http://[::10.0.0.1]/hook",
        "http://[::a9fe:a9fe]/latest/meta-data",
        "http://[::ffff:192.168.1.10]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:0:10.0.0.1]/hook",
        "http://[::ffff:0:7f00:1]/hook",
    ],
)
def test_it_refuses_private_targets(api, public_dns, url):
    response = create(api, url=url)
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "WEBHOOK_TARGET_NOT_ALLOWED"
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", ["http://[64:ff9b::808:808]/hook", "http://[2002:808:808::1]/hook"])
def test_nat64_and_6to4_addresses_of_public_ipv4_addresses_are_accepted(api, public_dns, url):
    assert create(api, url=url).status_code == 201


def test_private_targets_are_allowed_by_setting(api, allow_private):
    assert create(api, url="http://127.0.0.1:9/hook").status_code == 201


def test_it_refuses_non_http_urls(api, public_dns):
    assert create(api, url="ftp://hook.example.com/x").status_code == 400


def test_it_updates_and_reenables_an_endpoint(api, public_dns):
    endpoint_id = create(api).json()["id"]
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        is_active=False, disabled_reason="The endpoint answered 410 Gone"
    )
    response = api.patch(
        f"/api/webhooks/{endpoint_id}",
        {"isActive": True, "events": ["message.failed"], "name": "Renamed"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json() == {"success": True}
    body = api.get(f"/api/webhooks/{endpoint_id}").json()
    assert body["isActive"] is True
    assert body["disabledReason"] == ""
    assert body["events"] == ["message.failed"]
    assert body["name"] == "Renamed"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"url": "nope"}, "Invalid URL format"),
        ({"url": ""}, "Invalid URL format"),
        ({"events": []}, "At least one event must be selected"),
        ({"events": ["message.sent", "x"]}, "Invalid events: x"),
        ({"name": ""}, "Name is required"),
        ({"isActive": "no"}, "isActive: must be true or false"),
    ],
)
def test_patch_answers_the_published_validation_texts(api, public_dns, body, error):
    endpoint_id = create(api).json()["id"]
    response = api.patch(f"/api/webhooks/{endpoint_id}", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == error
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    assert (endpoint.url, endpoint.events, endpoint.name) == (
        "https://hook.example.com/tuco",
        EVENTS,
        "CRM",
    )


def test_patch_refuses_a_private_url(api, public_dns):
    endpoint_id = create(api).json()["id"]
    response = api.patch(f"/api/webhooks/{endpoint_id}", {"url": "http://10.0.0.1/"}, format="json")
    assert response.status_code == 400
    assert WebhookEndpoint.objects.get(pk=endpoint_id).url == "https://hook.example.com/tuco"


def test_it_deletes_an_endpoint(api, public_dns):
    endpoint_id = create(api).json()["id"]
    assert api.delete(f"/api/webhooks/{endpoint_id}").json() == {"success": True}
    assert api.get(f"/api/webhooks/{endpoint_id}").status_code == 404


def test_other_workspaces_cannot_see_or_touch_an_endpoint(api, globex_api, public_dns):
    endpoint_id = create(api).json()["id"]
    assert globex_api.get("/api/webhooks").json() == {"webhooks": []}
    for response in (
        globex_api.get(f"/api/webhooks/{endpoint_id}"),
        globex_api.patch(f"/api/webhooks/{endpoint_id}", {"name": "x"}, format="json"),
        globex_api.delete(f"/api/webhooks/{endpoint_id}"),
        globex_api.post(f"/api/webhooks/{endpoint_id}/health-check"),
        globex_api.get(f"/api/webhooks/{endpoint_id}/deliveries"),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": "Webhook not found", "code": "NOT_FOUND"}
    assert WebhookEndpoint.objects.get(pk=endpoint_id).name == "CRM"


def test_unknown_and_malformed_ids_are_404(api):
    for endpoint_id in ("0" * 24, "nope"):
        response = api.get(f"/api/webhooks/{endpoint_id}")
        assert response.status_code == 404
        assert response.json() == {"error": "Webhook not found", "code": "NOT_FOUND"}


def test_members_cannot_manage_webhooks(client, bob, acme):
    client.force_login(bob)
    response = client.get("/api/webhooks")
    assert response.status_code == 403


def test_health_check_sends_a_signed_test_event(api, acme, allow_private, receiver):
    created = create(api, url=receiver.url).json()
    response = api.post(f"/api/webhooks/{created['id']}/health-check")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["message"] == "Health check passed"
    assert body["statusCode"] == 200
    assert body["response"] == "ok"
    assert "error" not in body
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert verify_signature(created["secret"], request)
    # The first subscribed event type, as test-webhook.mdx says.
    assert request["headers"]["X-Tuco-Event"] == "message.sent"
    assert request["headers"]["webhook-id"] == body["deliveryId"]
    event = receiver.events()[0]
    assert event["event"] == "message.sent"
    assert event["workspaceId"] == acme.pk
    assert event["data"] == {
        "test": True,
        "message": "This is a health check test webhook from Tuco AI",
        "webhookId": created["id"],
    }

    deliveries = api.get(f"/api/webhooks/{created['id']}/deliveries").json()
    assert deliveries["total"] == 1
    assert deliveries["deliveries"][0]["status"] == "delivered"
    assert deliveries["deliveries"][0]["attemptLog"][0]["statusCode"] == 200


def test_health_check_reports_a_failing_endpoint(api, allow_private, receiver):
    receiver.status = 500
    created = create(api, url=receiver.url).json()
    body = api.post(f"/api/webhooks/{created['id']}/health-check").json()
    assert body["success"] is False
    assert body["statusCode"] == 500
    assert body["error"] == "HTTP 500: Internal Server Error"
    assert body["details"] == "ok"
    assert "message" not in body
    delivery = WebhookDelivery.objects.get(pk=body["deliveryId"])
    assert delivery.status == "failed"
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1
