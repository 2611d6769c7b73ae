"""/api/campaign-tools and /api/campaign-tools/test as published: list, create or
update (pass id), delete (?id=), test against a lead."""

import pytest
from django.db import connection

from campaigns.models import ApiTool
from leads.models import Lead

SECRET = "Bearer sk-live-0123456789abcdef"


@pytest.fixture
def save(api):
    def save(expect=200, client=None, **body):
        response = (client or api).post("/api/campaign-tools", body, format="json")
        assert response.status_code == expect, response.json()
        return response.json()

    return save


@pytest.fixture
def tool_body(customer_api):
    return {
        "name": "Check Status",
        "method": "GET",
        "url": customer_api.url + "/status?phone={phone}",
        "headers": {"Authorization": SECRET, "X-Team": "growth"},
        "responseMapping": "data.status",
        "description": "Account status",
    }


@pytest.fixture
def lead(acme):
    return Lead.objects.create(workspace=acme, first_name="Dana", phone="+14155550102")


def test_it_creates_a_tool_and_never_shows_its_headers(api, save, tool_body):
    tool = save(**tool_body)["tool"]
    assert tool["id"] == tool["_id"]
    assert tool["name"] == "Check Status"
    assert tool["variable"] == "api_check_status"
    assert tool["method"] == "GET"
    assert tool["responseMapping"] == "data.status"
    assert tool["headers"] == {"Authorization": "••••cdef", "X-Team": "••••"}
    listed = api.get("/api/campaign-tools").json()
    assert [t["id"] for t in listed["tools"]] == [tool["id"]]
    assert SECRET not in str(listed)


def test_headers_are_encrypted_at_rest(save, tool_body):
    tool_id = save(**tool_body)["tool"]["id"]
    table = ApiTool._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT headers FROM {table} WHERE id = %s", [tool_id])  # noqa: S608
        stored = cursor.fetchone()[0]
    assert "sk-live" not in stored and "Authorization" not in stored
    assert ApiTool.objects.get(pk=tool_id).headers.startswith('{"Authorization"')


def test_an_update_keeps_masked_headers_and_changes_the_rest(
    api, save, tool_body, lead, customer_api
):
    tool = save(**tool_body)["tool"]
    updated = save(
        **{**tool_body, "id": tool["id"], "name": "Check Plan", "headers": tool["headers"]}
    )["tool"]
    assert updated["id"] == tool["id"] and updated["variable"] == "api_check_plan"
    assert ApiTool.objects.count() == 1
    api.post("/api/campaign-tools/test", {"toolId": tool["id"]}, format="json")
    assert customer_api.requests[-1]["headers"]["Authorization"] == SECRET
    assert customer_api.requests[-1]["headers"]["X-Team"] == "growth"
    # Without headers they stay; with new ones they are replaced.
    save(**{k: v for k, v in tool_body.items() if k != "headers"}, id=tool["id"])
    api.post("/api/campaign-tools/test", {"toolId": tool["id"]}, format="json")
    assert customer_api.requests[-1]["headers"]["Authorization"] == SECRET
    save(**{**tool_body, "id": tool["id"], "headers": {"Authorization": "Token new"}})
    api.post("/api/campaign-tools/test", {"toolId": tool["id"]}, format="json")
    assert customer_api.requests[-1]["headers"]["Authorization"] == "Token new"
    assert "X-Team" not in customer_api.requests[-1]["headers"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"name": None}, "name: This field may not be null."),
        ({"name": " !! "}, "name: Must contain a letter or a digit"),
        ({"method": "TRACE"}, "method: Must be GET, POST, PUT, PATCH or DELETE"),
        ({"url": "ftp://example.com/x"}, "url: Enter a valid http(s) URL"),
        ({"url": "https://{custom.host}/x"}, "url: Variables can only be used in the path"),
        ({"url": "https://example.com/{nickname}"}, "url: Unknown variable {nickname}"),
        ({"responseMapping": "data..status"}, "responseMapping: Must be a dot path"),
        ({"body": '{"phone": {phone}}'}, "body: Must be valid JSON"),
        ({"body": 12}, "body: Must be a JSON string"),
        ({"headers": {"Bad Name": "x"}}, "headers.Bad Name: Not a valid header name"),
        ({"headers": {"X-A": "a\r\nX-B: b"}}, "headers.X-A: Must be one line"),
        ({"headers": {"Host": "internal"}}, "headers.Host: This header is set by Tuco"),
        ({"headers": "x"}, "headers: Expected a dictionary"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(save, tool_body, change, error):
    body = save(expect=400, **{**tool_body, **change})
    assert body["error"].startswith(error)
    assert ApiTool.objects.count() == 0


def test_a_missing_required_field_is_a_400(api):
    response = api.post("/api/campaign-tools", {"name": "x", "method": "GET"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "url: This field is required."


def test_a_body_object_is_taken_as_its_json(save, tool_body):
    tool = save(**{**tool_body, "method": "POST", "body": {"phone": "{phone}"}})["tool"]
    assert tool["body"] == '{"phone": "{phone}"}'


def test_a_private_target_is_refused_without_the_setting(save, tool_body, settings):
    settings.API_TOOLS_ALLOW_PRIVATE_TARGETS = False
    body = save(expect=400, **tool_body)
    assert body["code"] == "API_TOOL_TARGET_NOT_ALLOWED"
    assert "API tools can only reach public addresses" in body["error"]


def test_two_tools_with_one_variable_conflict(save, tool_body):
    save(**tool_body)
    body = save(expect=409, **{**tool_body, "name": "check status!"})
    assert body["error"] == "name: A tool whose variable is {api_check_status} already exists"


def test_another_workspace_cannot_see_change_test_or_delete_a_tool(save, tool_body, globex_api):
    tool_id = save(**tool_body)["tool"]["id"]
    assert globex_api.get("/api/campaign-tools").json()["tools"] == []
    body = save(expect=404, client=globex_api, **{**tool_body, "id": tool_id})
    assert body["error"] == "Tool not found"
    response = globex_api.post("/api/campaign-tools/test", {"toolId": tool_id}, format="json")
    assert response.status_code == 404
    assert globex_api.delete(f"/api/campaign-tools?id={tool_id}").status_code == 404
    assert ApiTool.objects.filter(pk=tool_id).exists()


def test_it_deletes_a_tool(api, save, tool_body):
    tool_id = save(**tool_body)["tool"]["id"]
    response = api.delete(f"/api/campaign-tools?id={tool_id}")
    assert response.status_code == 200 and response.json() == {"success": True}
    assert api.get("/api/campaign-tools").json()["tools"] == []
    again = api.delete(f"/api/campaign-tools?id={tool_id}")
    assert again.status_code == 404 and again.json()["error"] == "Tool not found"
    missing = api.delete("/api/campaign-tools")
    assert missing.status_code == 400 and missing.json()["error"] == "id: Tool ID is required"


# Test


def test_it_tests_a_tool_with_a_lead(api, save, tool_body, lead, customer_api):
    tool_id = save(**tool_body)["tool"]["id"]
    response = api.post(
        "/api/campaign-tools/test", {"toolId": tool_id, "leadId": lead.pk}, format="json"
    )
    assert response.status_code == 200
    result = response.json()
    assert result["success"] is True
    assert result["value"] == "active" and result["text"] == "active"
    assert result["statusCode"] == 200 and result["error"] is None
    assert '"status": "active"' in result["rawResponse"]
    assert result["request"] == {
        "method": "GET",
        "url": customer_api.url + "/status?phone=%2B14155550102",
    }
    assert customer_api.requests[-1]["path"] == "/status?phone=%2B14155550102"


def test_without_a_lead_the_variables_are_empty(api, save, tool_body, customer_api):
    tool_id = save(**tool_body)["tool"]["id"]
    result = api.post("/api/campaign-tools/test", {"toolId": tool_id}, format="json").json()
    assert result["success"] is True and result["leadId"] is None
    assert customer_api.requests[-1]["path"] == "/status?phone="


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/error", "The API answered HTTP 500"),
        ("/text", "The answer is not JSON"),
        ("/slow", "No answer within 1 s"),
    ],
)
def test_a_failing_api_is_reported_not_raised(api, save, tool_body, customer_api, path, error):
    tool_id = save(**{**tool_body, "url": customer_api.url + path})["tool"]["id"]
    response = api.post("/api/campaign-tools/test", {"toolId": tool_id}, format="json")
    assert response.status_code == 200
    assert response.json()["success"] is False
    assert response.json()["error"] == error
    assert response.json()["value"] is None


def test_test_input_errors(api, save, tool_body):
    tool_id = save(**tool_body)["tool"]["id"]
    missing = api.post("/api/campaign-tools/test", {}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"] == "toolId: Tool ID is required"
    unknown = api.post("/api/campaign-tools/test", {"toolId": "nope"}, format="json")
    assert unknown.status_code == 404 and unknown.json()["error"] == "Tool not found"
    no_lead = api.post(
        "/api/campaign-tools/test", {"toolId": tool_id, "leadId": "nope"}, format="json"
    )
    assert no_lead.status_code == 404
    assert no_lead.json()["error"] == "Lead not found or access denied"


def test_it_needs_a_key(anon):
    assert anon.get("/api/campaign-tools").status_code == 401
