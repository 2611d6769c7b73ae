import re

from tuco.models import ApiKey, Membership, hash_api_key


def test_settings_lists_keys_members_and_timezone(acme, alice_client, bob):
    page = alice_client.get("/settings/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Default key" in html
    assert "bob@acme.test" in html
    assert 'name="timezone"' in html


def test_creating_a_key_shows_it_once(acme, alice_client):
    response = alice_client.post("/settings/api-keys/", {"name": "Zapier"})
    # Post/redirect/get: reloading the page that shows the key creates nothing.
    assert response.status_code == 302
    assert response["Location"] == "/settings/"
    page = alice_client.get("/settings/")
    assert "no-store" in page["Cache-Control"]
    raw = re.search(r'id="new-key-value">([^<]+)<', page.content.decode()).group(1)
    key = ApiKey.objects.get(workspace=acme, name="Zapier")
    assert key.key_hash == hash_api_key(raw)
    reloaded = alice_client.get("/settings/").content.decode()
    assert raw not in reloaded and 'id="new-key-value"' not in reloaded
    assert ApiKey.objects.filter(workspace=acme, name="Zapier").count() == 1
    # The key works on the API.
    response = alice_client.get("/api/lines", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200


def test_key_name_is_required_and_errors_show_in_place(acme, alice_client):
    page = alice_client.post("/settings/api-keys/", {"name": ""})
    assert page.status_code == 400
    assert b"This field is required" in page.content
    assert ApiKey.objects.filter(workspace=acme).count() == 1


def test_revoking_a_key(acme, alice_client):
    key = acme.api_keys.get()
    response = alice_client.post(f"/settings/api-keys/{key.pk}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_it_cannot_revoke_another_workspaces_key(acme, globex, alice_client):
    key = globex.api_keys.get()
    alice_client.post(f"/settings/api-keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is None


def test_members_cannot_manage_keys(acme, bob_client):
    page = bob_client.get("/settings/")
    assert b"Create key" not in page.content
    response = bob_client.post("/settings/api-keys/", {"name": "x"})
    assert response.status_code == 403
    assert acme.api_keys.count() == 1


def test_setting_the_timezone(acme, alice_client):
    response = alice_client.post("/settings/timezone/", {"timezone": "Europe/Paris"})
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.timezone == "Europe/Paris"


def test_an_unknown_timezone_is_refused_in_place(acme, alice_client):
    page = alice_client.post("/settings/timezone/", {"timezone": "Mars/Olympus"})
    assert page.status_code == 400
    assert b"Select a valid choice" in page.content
    acme.refresh_from_db()
    assert acme.timezone == "UTC"


def test_adding_an_existing_user_as_member(acme, globex, alice_client):
    response = alice_client.post(
        "/settings/members/", {"email": "Charlie@Globex.test", "role": "admin"}
    )
    assert response.status_code == 302
    membership = Membership.objects.get(workspace=acme, user__email="charlie@globex.test")
    assert membership.role == "admin"


def test_adding_a_new_account_needs_a_password_and_keeps_input(acme, alice_client):
    page = alice_client.post("/settings/members/", {"email": "dana@acme.test", "role": "member"})
    assert page.status_code == 400
    assert b"choose a password" in page.content
    assert b'value="dana@acme.test"' in page.content
    response = alice_client.post(
        "/settings/members/",
        {"email": "dana@acme.test", "role": "member", "password": "dana-password"},
    )
    assert response.status_code == 302
    membership = Membership.objects.get(workspace=acme, user__email="dana@acme.test")
    assert membership.user.check_password("dana-password")


def test_adding_someone_twice_is_an_error(acme, bob, alice_client):
    page = alice_client.post("/settings/members/", {"email": "bob@acme.test", "role": "admin"})
    assert page.status_code == 400
    assert b"already a member" in page.content


def test_only_owners_add_owners(acme, bob, alice_client, django_user_model):
    Membership.objects.filter(user=bob).update(role="admin")
    from django.test import Client

    client = Client()
    client.force_login(bob)
    page = client.post(
        "/settings/members/",
        {"email": "eve@acme.test", "role": "owner", "password": "eve-password"},
    )
    assert page.status_code == 400
    assert b"Only an owner" in page.content
    assert not django_user_model.objects.filter(email="eve@acme.test").exists()


def test_settings_never_show_another_workspaces_data(acme, globex, alice_client):
    html = alice_client.get("/settings/").content.decode()
    assert "charlie@globex.test" not in html
    assert globex.api_keys.get().prefix not in html


def test_a_new_key_is_shown_only_in_its_own_workspace(acme, globex, alice, alice_client):
    from tuco.api.auth import SESSION_WORKSPACE_KEY

    Membership.objects.create(workspace=globex, user=alice, role="owner")
    alice_client.post("/settings/api-keys/", {"name": "Zapier"})
    session = alice_client.session
    session[SESSION_WORKSPACE_KEY] = globex.pk
    session.save()
    assert 'id="new-key-value"' not in alice_client.get("/settings/").content.decode()
