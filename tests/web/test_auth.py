from django.test import Client

from tuco.api.auth import SESSION_WORKSPACE_KEY
from tuco.models import Membership


def test_it_redirects_anonymous_visitors_to_login(db):
    response = Client().get("/leads/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/leads/"


def test_login_page_explains_an_ended_session(db):
    response = Client().get("/login/?next=/leads/")
    assert b"Your session has ended" in response.content


def test_it_logs_in_with_email_and_password(alice):
    client = Client()
    response = client.post(
        "/login/", {"username": "Alice@Acme.test", "password": "alice-password", "next": "/leads/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/leads/"
    assert client.get("/leads/").status_code == 200


def test_it_shows_login_errors_and_keeps_the_email(alice):
    response = Client().post("/login/", {"username": "alice@acme.test", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct" in response.content
    assert b'value="alice@acme.test"' in response.content


def test_logout_signs_out(alice_client):
    response = alice_client.post("/logout/")
    assert response.status_code == 302
    assert alice_client.get("/leads/").status_code == 302


def test_home_goes_to_leads(alice_client):
    response = alice_client.get("/")
    assert response["Location"] == "/leads/"


def test_htmx_request_after_session_end_redirects_the_whole_page(db):
    response = Client().post(
        "/leads/check/",
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL="http://testserver/leads/?page=2",
    )
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/login/?next=/leads/%3Fpage%3D2"


def test_stale_csrf_token_gets_a_friendly_page(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/settings/api-keys/", {"name": "x"})
    assert response.status_code == 403
    assert b"This page has expired" in response.content
    assert b"Nothing was changed" in response.content


def test_csrf_failure_on_htmx_request_refreshes_the_page(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/leads/check/", HTTP_HX_REQUEST="true")
    assert response.status_code == 403
    assert response["HX-Refresh"] == "true"


def test_user_without_workspace_sees_an_explanation(django_user_model):
    user = django_user_model.objects.create_user("dan@x.test", "dan@x.test", "dan-password")
    client = Client()
    client.force_login(user)
    response = client.get("/leads/")
    assert response.status_code == 403
    assert b"No workspace yet" in response.content


def test_switcher_lists_workspaces_and_switches(alice, acme, globex, alice_client):
    Membership.objects.create(workspace=globex, user=alice, role="member")
    page = alice_client.get("/settings/")
    assert b'id="workspace-switcher"' in page.content
    assert b"Globex" in page.content
    response = alice_client.post("/workspace/switch/", {"workspace": globex.pk})
    assert response.status_code == 302
    assert alice_client.session[SESSION_WORKSPACE_KEY] == globex.pk
    assert b"<strong>Globex</strong>" in alice_client.get("/settings/").content


def test_switcher_refuses_a_foreign_workspace(acme, globex, alice_client):
    alice_client.post("/workspace/switch/", {"workspace": globex.pk})
    assert alice_client.session.get(SESSION_WORKSPACE_KEY) != globex.pk
    assert b"<strong>Acme</strong>" in alice_client.get("/settings/").content


def test_read_only_workspace_refuses_dashboard_writes(acme, alice_client):
    acme.billing_status = "past_due"
    acme.save()
    response = alice_client.post("/settings/api-keys/", {"name": "CI"}, HTTP_REFERER="/settings/")
    assert response.status_code == 302
    assert acme.api_keys.count() == 1
    assert b"read-only" in alice_client.get("/settings/").content


def test_read_only_workspace_still_lets_its_users_switch_away(alice, acme, globex, alice_client):
    Membership.objects.create(workspace=globex, user=alice, role="member")
    acme.billing_status = "past_due"
    acme.save()
    response = alice_client.post("/workspace/switch/", {"workspace": globex.pk})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert alice_client.session[SESSION_WORKSPACE_KEY] == globex.pk


def test_read_only_workspace_still_answers_the_quick_send_check(acme, alice_client, make_line):
    make_line(acme)
    acme.billing_status = "past_due"
    acme.save()
    response = alice_client.post(
        "/quick-send/check/", {"recipient": "+12025550124"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert "HX-Redirect" not in response
    assert b'data-state="available"' in response.content
    # Sending itself is still refused.
    response = alice_client.post(
        "/quick-send/",
        {"recipient": "+12025550124", "channel": "imessage", "message": "Hi", "when": "now"},
    )
    assert response.status_code == 302
    assert not acme.messages.exists()
