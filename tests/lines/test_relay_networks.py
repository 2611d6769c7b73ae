"""RELAY_ALLOWED_NETWORKS fences where relays may be reached (checked on the connected
socket and when a server URL is saved), who may point a line somewhere, and what a
relay may put on our pages about itself."""

import ipaddress

import pytest
import responses

from lines.models import Line
from lines.relay import ACCOUNT_NAME_MAX, BlueBubblesClient, RelayError
from lines.services import line_create
from tuco.errors import ValidationFailed

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
ELSEWHERE = [ipaddress.ip_network("10.0.0.0/8")]


def test_a_relay_outside_the_allowed_networks_is_never_contacted(relay, settings):
    sim = relay
    settings.RELAY_ALLOWED_NETWORKS = ELSEWHERE
    with (
        BlueBubblesClient(sim.url, "sim-secret", timeout=(2, 5)) as client,
        pytest.raises(RelayError) as caught,
    ):
        client.list_webhooks()
    assert caught.value.permanent and not caught.value.reached
    assert "RELAY_ALLOWED_NETWORKS" in caught.value.message
    assert sim.stats["total"] == 0


def test_a_relay_inside_the_allowed_networks_is_reached(relay, settings):
    sim = relay
    settings.RELAY_ALLOWED_NETWORKS = LOOPBACK
    with BlueBubblesClient(sim.url, "sim-secret", timeout=(2, 5)) as client:
        assert client.list_webhooks() == []


@pytest.mark.django_db
def test_a_server_url_outside_the_allowed_networks_is_refused(acme, api, settings):
    settings.RELAY_ALLOWED_NETWORKS = ELSEWHERE
    for url in ("http://127.0.0.1:1234", "http://localhost:1234"):
        with pytest.raises(ValidationFailed) as caught:
            line_create(workspace=acme, server_url=url, relay_password="x")
        assert caught.value.field == "serverUrl"
    response = api.post(
        "/api/lines", {"serverUrl": "http://127.0.0.1:1234", "password": "x"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("serverUrl: ")
    assert "RELAY_ALLOWED_NETWORKS" in response.json()["error"]
    assert not Line.objects.exists()
    settings.RELAY_ALLOWED_NETWORKS = LOOPBACK
    assert line_create(workspace=acme, server_url="http://127.0.0.1:1234", relay_password="x")


@pytest.mark.django_db
def test_members_cannot_rotate_a_lines_callback_url(acme, bob):
    from rest_framework.test import APIClient

    line = line_create(workspace=acme, server_url="http://127.0.0.1:9", relay_password="x")
    token = line.webhook_token
    client = APIClient()
    client.force_login(bob)
    assert client.post(f"/api/lines/{line.pk}/rotate-callback-token").status_code == 403
    line.refresh_from_db()
    assert line.webhook_token == token


RELAY = "http://relay.test:1234"


def health_with(info, ping="pong"):
    with responses.RequestsMock() as rsps:
        rsps.get(f"{RELAY}/api/v1/ping", json={"status": 200, "message": "Ping", "data": ping})
        rsps.get(
            f"{RELAY}/api/v1/server/info",
            json={"status": 200, "message": "Info", "data": info},
        )
        with BlueBubblesClient(RELAY, "pw") as client:
            return client.health()


def test_the_account_name_is_one_short_line_of_text():
    hostile = "<script>alert(1)</script>\n\x1b[31m" + "a" * 500
    result = health_with({"helper_connected": True, "detected_imessage": hostile})
    assert result.healthy
    name = result.detail.removeprefix("Signed in as ")
    assert len(name) == ACCOUNT_NAME_MAX
    assert name.startswith("<script>alert(1)</script> [31maaa")
    assert name.endswith("…")
    assert all(ch.isprintable() for ch in name)


def test_a_server_that_is_not_a_relay_shows_no_account_name():
    result = health_with({"helper_connected": True, "detected_imessage": "evil"}, ping="nope")
    assert not result.healthy
    assert "Signed in" not in result.detail and "evil" not in result.detail
