from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from tuco.models import Membership

LOCKOUT = b"Too many failed sign-in attempts; try again in 15 minutes."


def sign_in(client, password, username="alice@acme.test", path="/login/"):
    return client.post(path, {"username": username, "password": password, "next": "/leads/"})


def fail_five_times(client, **kwargs):
    """Four failures say the password is wrong; the fifth reaches the limit."""
    for _ in range(4):
        response = sign_in(client, "wrong-password", **kwargs)
        assert response.status_code == 200
        assert b"Please enter a correct" in response.content
    response = sign_in(client, "wrong-password", **kwargs)
    assert response.status_code == 429
    assert LOCKOUT in response.content


def test_the_sixth_attempt_after_five_failures_is_refused_even_with_the_right_password(alice):
    client = Client()
    fail_five_times(client)
    response = sign_in(client, "alice-password")
    assert response.status_code == 429
    assert LOCKOUT in response.content
    assert b'value="alice@acme.test"' in response.content
    assert client.get("/leads/").status_code == 302


def test_the_lockout_is_per_email_and_address(alice):
    fail_five_times(Client(REMOTE_ADDR="10.0.0.1"))
    response = sign_in(Client(REMOTE_ADDR="10.0.0.2"), "alice-password")
    assert response.status_code == 302
    assert response["Location"] == "/leads/"


def test_signing_in_works_again_after_the_cool_off(alice):
    client = Client()
    fail_five_times(client)
    assert sign_in(client, "alice-password").status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    response = sign_in(client, "alice-password")
    assert response.status_code == 302
    assert client.get("/leads/").status_code == 200


def test_a_success_clears_earlier_failures(alice):
    client = Client()
    for _ in range(4):
        sign_in(client, "wrong-password")
    assert sign_in(client, "alice-password").status_code == 302
    client.post("/logout/")
    for _ in range(4):
        sign_in(client, "wrong-password")
    assert sign_in(client, "alice-password").status_code == 302


def test_the_admin_sign_in_is_throttled_too(db, django_user_model):
    django_user_model.objects.create_superuser("root", "root@tuco.test", "root-password")
    client = Client()
    for _ in range(4):
        response = sign_in(client, "wrong-password", username="root", path="/admin/login/")
        assert response.status_code == 200
    assert (
        sign_in(client, "wrong-password", username="root", path="/admin/login/").status_code == 429
    )
    response = sign_in(client, "root-password", username="root", path="/admin/login/")
    assert response.status_code == 429
    assert LOCKOUT in response.content
    assert client.get("/admin/").status_code == 302


def test_the_api_is_unaffected_by_a_locked_out_owner(alice, api):
    fail_five_times(Client())
    assert sign_in(Client(), "alice-password").status_code == 429
    assert api.get("/api/workspace/fallback-config").status_code == 200


def test_a_weak_password_for_a_new_member_is_refused(acme, alice_client, django_user_model):
    page = alice_client.post(
        "/settings/members/", {"email": "dana@acme.test", "role": "member", "password": "password"}
    )
    assert page.status_code == 400
    assert b"This password is too common." in page.content
    assert not django_user_model.objects.filter(email="dana@acme.test").exists()
    assert not Membership.objects.filter(workspace=acme, user__email="dana@acme.test").exists()


def test_create_workspace_refuses_a_weak_password(db, django_user_model):
    with pytest.raises(CommandError, match="This password is entirely numeric."):
        call_command(
            "create_workspace", "Initech", "--owner-email=pat@initech.test", "--password=12345678"
        )
    assert not django_user_model.objects.filter(email="pat@initech.test").exists()
