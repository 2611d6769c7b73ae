import re

from messaging.models import FallbackConfig, WebhookDelivery, WebhookEndpoint


def test_fallback_config_is_saved_and_the_token_never_shown(acme, alice_client):
    response = alice_client.post(
        "/settings/fallback/",
        {"enabled": "on", "twilio_account_sid": "AC123", "twilio_auth_token": "sekret-token",
         "twilio_from_number": "+1 202 555 0188"},
    )  # fmt: skip
    assert response.status_code == 302
    config = FallbackConfig.objects.get(workspace=acme)
    assert config.enabled and config.twilio_auth_token == "sekret-token"
    assert config.twilio_from_number == "+12025550188"
    html = alice_client.get("/settings/").content.decode()
    assert "sekret-token" not in html and "AC123" in html
    # A blank token keeps the stored one.
    alice_client.post(
        "/settings/fallback/",
        {"enabled": "on", "twilio_account_sid": "AC999", "twilio_from_number": "+12025550188"},
    )
    config.refresh_from_db()
    assert config.twilio_account_sid == "AC999" and config.twilio_auth_token == "sekret-token"


def test_enabling_fallback_without_credentials_is_refused_in_place(acme, alice_client):
    response = alice_client.post("/settings/fallback/", {"enabled": "on"})
    assert response.status_code == 400
    assert "Enabling the fallback needs" in response.content.decode()
    assert not FallbackConfig.objects.filter(workspace=acme, enabled=True).exists()


def test_creating_a_webhook_shows_its_secret_once(acme, alice_client, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    response = alice_client.post(
        "/settings/webhooks/",
        {"name": "CRM", "url": "http://127.0.0.1:9/hook", "events": ["message.sent"]},
    )
    # Post/redirect/get: reloading the page that shows the secret creates nothing.
    assert response.status_code == 302
    assert response["Location"] == "/settings/"
    page = alice_client.get("/settings/")
    endpoint = WebhookEndpoint.objects.get(workspace=acme)
    secret = re.search(r'id="new-webhook-secret">([^<]+)<', page.content.decode()).group(1)
    assert secret == endpoint.secret
    assert endpoint.secret not in alice_client.get("/settings/").content.decode()
    assert WebhookEndpoint.objects.filter(workspace=acme).count() == 1


def test_webhook_errors_show_in_place(acme, alice_client):
    page = alice_client.post(
        "/settings/webhooks/", {"name": "CRM", "url": "http://127.0.0.1/hook", "events": []}
    )
    assert page.status_code == 400
    html = page.content.decode()
    assert "This field is required" in html  # events
    assert 'value="CRM"' in html
    page = alice_client.post(
        "/settings/webhooks/",
        {"name": "CRM", "url": "http://127.0.0.1/hook", "events": ["message.sent"]},
    )
    assert page.status_code == 400
    assert not WebhookEndpoint.objects.exists()


def test_deliveries_are_listed_and_can_be_resent(acme, globex, alice_client):
    endpoint = WebhookEndpoint.objects.create(
        workspace=acme, url="https://example.com/h", name="CRM", events=["message.sent"]
    )
    delivery = WebhookDelivery.objects.create(
        workspace=acme, endpoint=endpoint, event="message.sent", payload={}, status="failed",
        attempts=7, last_status_code=500,
    )  # fmt: skip
    other = WebhookEndpoint.objects.create(
        workspace=globex, url="https://globex.example/h", name="Secret hook", events=[]
    )
    foreign = WebhookDelivery.objects.create(
        workspace=globex, endpoint=other, event="message.sent", payload={}, status="failed"
    )
    html = alice_client.get("/settings/").content.decode()
    assert "Failed" in html and "Secret hook" not in html and "globex.example" not in html
    assert (
        alice_client.post(f"/settings/webhooks/deliveries/{foreign.pk}/resend/").status_code == 404
    )
    response = alice_client.post(f"/settings/webhooks/deliveries/{delivery.pk}/resend/")
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 0


def test_members_cannot_change_fallback_or_webhooks(acme, bob_client):
    assert bob_client.post("/settings/fallback/", {"enabled": ""}).status_code == 403
    assert bob_client.post("/settings/webhooks/", {"name": "x"}).status_code == 403
    assert 'action="/settings/webhooks/"' not in bob_client.get("/settings/").content.decode()


def test_deleting_another_workspaces_webhook_is_404(acme, globex, alice_client):
    other = WebhookEndpoint.objects.create(
        workspace=globex, url="https://globex.example/h", name="G", events=[]
    )
    assert alice_client.post(f"/settings/webhooks/{other.pk}/delete/").status_code == 404
    assert WebhookEndpoint.objects.filter(pk=other.pk).exists()


def test_settings_page_has_a_fixed_number_of_queries(
    acme, alice_client, bob, django_assert_max_num_queries
):
    for i in range(5):
        WebhookEndpoint.objects.create(
            workspace=acme, url=f"https://example.com/{i}", name=f"H{i}", events=[]
        )
    alice_client.get("/settings/")
    with django_assert_max_num_queries(10):
        alice_client.get("/settings/")
