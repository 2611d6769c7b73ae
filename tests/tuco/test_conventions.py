import pytest
from django.test import override_settings

from tuco.models import ApiKey, Workspace
from tuco.services import api_key_create, api_key_revoke


def test_it_accepts_bearer_and_x_api_key(acme, anon):
    assert (
        anon.get("/api/workspace", HTTP_AUTHORIZATION=f"Bearer {acme.raw_key}").status_code == 200
    )
    response = anon.get("/api/workspace", HTTP_X_API_KEY=acme.raw_key)
    assert response.status_code == 200
    assert response.json()["_id"] == acme.pk


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer tuco_sk_nope"},
        {"HTTP_X_API_KEY": "tuco_sk_nope"},
        {"HTTP_AUTHORIZATION": "Basic abc"},
    ],
)
def test_it_rejects_missing_or_invalid_keys(acme, anon, headers):
    response = anon.get("/api/workspace", **headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}


def test_it_rejects_revoked_keys(acme, anon):
    key, raw = api_key_create(workspace=acme, name="temp")
    assert anon.get("/api/workspace", HTTP_X_API_KEY=raw).status_code == 200
    api_key_revoke(workspace=acme, key_id=key.pk)
    assert anon.get("/api/workspace", HTTP_X_API_KEY=raw).json() == {"error": "Unauthorized"}


def test_keys_are_stored_hashed(acme):
    assert not ApiKey.objects.filter(key_hash=acme.raw_key).exists()
    assert acme.raw_key.startswith("tuco_sk_")
    key = ApiKey.objects.get(workspace=acme)
    assert key.last_used_at is None


def test_it_records_last_use(acme, api):
    api.get("/api/workspace")
    assert ApiKey.objects.get(workspace=acme).last_used_at is not None


def test_unknown_api_url_is_json_404(api):
    response = api.get("/api/does-not-exist")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]


def test_wrong_method_is_json_405(api):
    response = api.delete("/api/workspace")
    assert response.status_code == 405
    assert "error" in response.json()


def test_correlation_id_is_echoed_or_generated(api):
    assert api.get("/api/workspace", HTTP_X_CORRELATION_ID="abc-123")["x-correlation-id"] == (
        "abc-123"
    )
    generated = api.get("/api/workspace")["x-correlation-id"]
    assert generated.startswith("app_")


def test_session_auth_uses_the_users_workspace(client, alice, acme):
    client.force_login(alice)
    assert client.get("/api/workspace").json()["_id"] == acme.pk


def test_past_due_workspace_can_read(acme, api):
    Workspace.objects.filter(pk=acme.pk).update(billing_status="past_due")
    assert api.get("/api/workspace").status_code == 200


@override_settings(RATE_LIMITS={"default": 3})
def test_rate_limit_answers_429_with_retry_after(api):
    statuses = [api.get("/api/workspace").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = api.get("/api/workspace")
    assert response.json() == {"error": "Rate limit exceeded", "code": "RATE_LIMITED"}
    assert 1 <= int(response["Retry-After"]) <= 20


@override_settings(RATE_LIMITS={"default": 2})
def test_rate_limit_is_per_workspace(api, globex_api):
    api.get("/api/workspace")
    api.get("/api/workspace")
    assert api.get("/api/workspace").status_code == 429
    assert globex_api.get("/api/workspace").status_code == 200


def test_correlation_id_comes_from_the_body_when_no_header_is_sent(api):
    response = api.post("/api/lists", {"name": "Body id", "correlationId": "crm-42"}, format="json")
    assert response["x-correlation-id"] == "crm-42"


def test_unsupported_media_type_and_malformed_json_are_json_errors(api):
    response = api.post("/api/lists", "name=x", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"
    response = api.post("/api/lists", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "PARSE_ERROR"


DEEP_JSON = "[" * 100000


def test_deeply_nested_json_without_a_key_is_401_not_500(anon):
    response = anon.post("/api/lists", DEEP_JSON, content_type="application/json")
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}
    assert response["x-correlation-id"].startswith("app_")


def test_deeply_nested_json_naming_a_correlation_id_is_401_not_500(anon):
    body = '{"correlationId": "crm-1", "x": ' + DEEP_JSON
    response = anon.post("/api/lists", body, content_type="application/json")
    assert response.status_code == 401
    assert response["x-correlation-id"].startswith("app_")


def test_deeply_nested_json_is_a_400_parse_error(api):
    response = api.post("/api/lists", DEEP_JSON, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "error": "Malformed request body: JSON parse error - nested too deeply",
        "code": "PARSE_ERROR",
    }
