import re

import pytest
from django.test import Client

from tuco.models import ApiKey, hash_api_key


@pytest.fixture
def admin_client(db, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@tuco.test", "root-password")
    client = Client()
    client.force_login(user)
    return client


def test_creating_a_key_in_admin_shows_it_once_and_stores_a_hash(acme, admin_client):
    response = admin_client.post(
        "/admin/tuco/apikey/add/", {"workspace": acme.pk, "name": "Ops"}, follow=True
    )
    assert response.status_code == 200
    html = response.content.decode()
    raw = re.search(r"(tuco_sk_[A-Za-z0-9_\-]+)", html).group(1)
    key = ApiKey.objects.get(workspace=acme, name="Ops")
    assert key.key_hash == hash_api_key(raw)
    assert raw not in key.prefix + key.key_hash
    assert raw not in admin_client.get(f"/admin/tuco/apikey/{key.pk}/change/").content.decode()


def test_admin_lists_and_revokes_keys(acme, admin_client):
    key = acme.api_keys.get()
    assert admin_client.get("/admin/tuco/apikey/").status_code == 200
    admin_client.post(
        "/admin/tuco/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]}
    )
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_workspace_and_membership_admin_pages(acme, alice, admin_client):
    assert admin_client.get("/admin/tuco/workspace/").status_code == 200
    assert admin_client.get(f"/admin/tuco/workspace/{acme.pk}/change/").status_code == 200
    assert admin_client.get("/admin/tuco/membership/").status_code == 200
