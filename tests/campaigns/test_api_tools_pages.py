"""The dashboard's API Tools pages: list, create and edit (headers masked), delete, and
the Test button with a lead picker, against a local stand-in for the customer's API."""

import pytest
from django.test import Client

from campaigns.models import ApiTool
from leads.models import Lead

SECRET = "Bearer sk-live-0123456789abcdef"


@pytest.fixture
def charlie_client(globex) -> Client:
    client = Client()
    client.force_login(globex.memberships.get().user)
    return client


def form_data(customer_api, **changes):
    data = {
        "name": "Check Status",
        "method": "GET",
        "url": customer_api.url + "/status?phone={phone}",
        "headers": f"Authorization: {SECRET}\nX-Team: growth",
        "body": "",
        "response_mapping": "data.status",
        "description": "",
    }
    return data | changes


def test_a_tool_is_created_listed_and_edited_with_masked_headers(alice_client, customer_api):
    response = alice_client.post("/campaigns/tools/new/", form_data(customer_api))
    tool = ApiTool.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/campaigns/tools/{tool.pk}/"
    listing = alice_client.get("/campaigns/tools/").content.decode()
    assert "Check Status" in listing and "{api_check_status}" in listing
    assert "API Tools" in listing  # in the navigation
    page = alice_client.get(f"/campaigns/tools/{tool.pk}/").content.decode()
    assert "Authorization: ••••cdef" in page and "sk-live" not in page
    # Saving the form as shown keeps the secret.
    edited = form_data(customer_api, name="Check Plan", headers="Authorization: ••••cdef")
    assert alice_client.post(f"/campaigns/tools/{tool.pk}/", edited).status_code == 302
    tool.refresh_from_db()
    assert tool.name == "Check Plan" and SECRET in tool.headers and "X-Team" not in tool.headers


@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"response_mapping": "a..b"}, "response_mapping", "Must be a dot path"),
        ({"body": "{nope"}, "body", "Must be valid JSON"),
        ({"url": "https://example.com/{nickname}"}, "url", "Unknown variable {nickname}"),
        ({"headers": "no colon here"}, "headers", "Line 1: write it as Name: value"),
        ({"headers": "Host: x"}, "headers", "Host: This header is set by Tuco"),
    ],
)
def test_errors_show_on_their_field_and_keep_what_was_typed(
    alice_client, customer_api, changes, field, error
):
    response = alice_client.post("/campaigns/tools/new/", form_data(customer_api, **changes))
    assert response.status_code == 400
    html = response.content.decode()
    assert f'id="id_{field}_errors"' in html and error in html
    assert "Check Status" in html
    assert not ApiTool.objects.exists()


def test_the_test_button_shows_the_mapped_value_for_the_picked_lead(
    acme, alice_client, customer_api
):
    lead = Lead.objects.create(workspace=acme, first_name="Dana", phone="+14155550102")
    alice_client.post("/campaigns/tools/new/", form_data(customer_api))
    tool = ApiTool.objects.get()
    page = alice_client.get(f"/campaigns/tools/{tool.pk}/").content.decode()
    assert f'<option value="{lead.pk}">Dana · +14155550102</option>' in page
    html = alice_client.post(
        f"/campaigns/tools/{tool.pk}/test/", {"lead": lead.pk}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert '<strong id="tool-value">active</strong>' in html
    assert "phone=%2B14155550102" in html
    assert customer_api.requests[-1]["headers"]["Authorization"] == SECRET


def test_the_test_button_shows_the_error(alice_client, customer_api):
    data = form_data(customer_api, url=customer_api.url + "/error")
    alice_client.post("/campaigns/tools/new/", data)
    tool = ApiTool.objects.get()
    html = alice_client.post(f"/campaigns/tools/{tool.pk}/test/", {"lead": ""}).content.decode()
    assert '<span id="tool-error">The API answered HTTP 500</span>' in html


def test_a_tool_is_deleted(alice_client, customer_api):
    alice_client.post("/campaigns/tools/new/", form_data(customer_api))
    tool = ApiTool.objects.get()
    response = alice_client.post(f"/campaigns/tools/{tool.pk}/delete/")
    assert response.status_code == 302 and not ApiTool.objects.exists()


def test_another_workspace_gets_404(alice_client, charlie_client, customer_api):
    alice_client.post("/campaigns/tools/new/", form_data(customer_api))
    tool = ApiTool.objects.get()
    assert charlie_client.get(f"/campaigns/tools/{tool.pk}/").status_code == 404
    assert charlie_client.post(f"/campaigns/tools/{tool.pk}/test/").status_code == 404
    assert charlie_client.post(f"/campaigns/tools/{tool.pk}/delete/").status_code == 404
    assert "Check Status" not in charlie_client.get("/campaigns/tools/").content.decode()
    assert ApiTool.objects.exists()
