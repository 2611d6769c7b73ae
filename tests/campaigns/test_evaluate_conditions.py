"""POST /api/campaigns/evaluate-conditions: stop rules and branch conditions judged
for a real lead, now."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from leads.models import Lead, LeadIdentifier, LeadTag, Tag
from messaging.inbound import inbound_record
from messaging.models import Message

URL = "/api/campaigns/evaluate-conditions"


@pytest.fixture
def lead(acme):
    lead = Lead.objects.create(workspace=acme, first_name="Ada", phone="+12025550100")
    LeadIdentifier.objects.create(workspace=acme, value=lead.phone, lead=lead, field="phone")
    tag = Tag.objects.create(workspace=acme, name="VIP")
    LeadTag.objects.create(lead=lead, tag=tag)
    return lead


def evaluate(api, **body):
    return api.post(URL, body, format="json")


def test_it_judges_each_rule_and_condition(api, acme, lead):
    Message.objects.create(
        workspace=acme,
        lead=lead,
        recipient_phone=lead.phone,
        status="delivered",
        sent_at=timezone.now() - timedelta(hours=30),
    )
    inbound_record(workspace=acme, address=lead.phone, text="What's the price?", channel="sms")
    response = evaluate(
        api,
        leadId=lead.pk,
        stopRules=[
            {"id": "r1", "type": "replied"},
            {"id": "r2", "type": "replied_keyword", "keyword": "demo"},
            {"type": "tag_exists", "tag": "vip"},
            {"id": "r4", "type": "dnc"},
            {"id": "r5", "type": "contacted_before"},
        ],
        branchConditions=[
            {"type": "no_reply_for", "hours": 24},
            {"type": "tag_not_exists", "tag": "VIP"},
            {"type": "default"},
        ],
    )
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "stopResults": [
            {"ruleId": "r1", "type": "replied", "result": True, "detail": mock.ANY},
            {
                "ruleId": "r2",
                "type": "replied_keyword",
                "result": False,
                "detail": "No reply contains “demo”",
            },
            {"ruleId": "2", "type": "tag_exists", "result": True, "detail": "Lead has tag “vip”"},
            {
                "ruleId": "r4",
                "type": "dnc",
                "result": False,
                "detail": "Lead is not on the do-not-contact list",
            },
            {
                "ruleId": "r5",
                "type": "contacted_before",
                "result": True,
                "detail": "Lead was contacted before",
            },
        ],
        "branchResults": [
            {"type": "no_reply_for", "result": False, "detail": mock.ANY},
            {"type": "tag_not_exists", "result": False, "detail": "Lead has tag “VIP”"},
            {"type": "default", "result": True, "detail": "Default path"},
        ],
    }
    assert response.json()["stopResults"][0]["detail"].startswith("Lead replied at ")
    assert response.json()["branchResults"][0]["detail"].startswith("Lead replied at ")


def test_a_no_reply_condition_still_waiting_is_false_and_says_until_when(api, acme, lead):
    Message.objects.create(
        workspace=acme, lead=lead, status="sent", sent_at=timezone.now() - timedelta(hours=1)
    )
    body = evaluate(
        api, leadId=lead.pk, branchConditions=[{"type": "no_reply_for", "hours": 48}]
    ).json()
    (result,) = body["branchResults"]
    assert result["result"] is False
    assert result["detail"].startswith("Waiting for a reply until ")
    assert body["stopResults"] == []


def test_api_tools_are_called_live(api, lead):
    rule = {"type": "api_tool", "toolId": "t1", "operator": "gte", "value": 3}
    with (
        mock.patch("campaigns.conditions.unknown_tool", return_value=""),
        mock.patch("campaigns.conditions._tool_value", return_value=(True, "5", "")) as tool,
    ):
        body = evaluate(api, leadId=lead.pk, stopRules=[rule], branchConditions=[rule]).json()
    assert body["stopResults"][0]["result"] is True
    assert body["stopResults"][0]["detail"] == "API tool returned “5”: greater than or equal to “3”"
    assert body["branchResults"][0]["result"] is True
    assert tool.call_args.args[1:] == ("t1", lead, None)


def test_a_real_tool_is_called_and_its_failure_is_not_met(api, acme, lead, customer_api):
    from campaigns.models import ApiTool

    good = ApiTool.objects.create(
        workspace=acme,
        name="Status",
        variable_name="status",
        url=customer_api.url + "/status?status=vip",
        response_mapping="data.status",
    )
    broken = ApiTool.objects.create(
        workspace=acme,
        name="Broken",
        variable_name="broken",
        url=customer_api.url + "/error",
        response_mapping="data.status",
    )
    body = evaluate(
        api,
        leadId=lead.pk,
        stopRules=[
            {"type": "api_tool", "toolId": good.pk, "operator": "eq", "value": "VIP"},
            {"type": "api_tool", "toolId": broken.pk, "operator": "exists"},
        ],
    ).json()
    assert body["stopResults"][0]["result"] is True
    assert body["stopResults"][1]["result"] is False
    assert body["stopResults"][1]["detail"].startswith("API tool failed:")
    assert [r["path"] for r in customer_api.requests] == ["/status?status=vip", "/error"]


def test_an_unknown_tool_is_a_400(api, lead):
    rule = {"type": "api_tool", "toolId": "gone", "operator": "exists"}
    with mock.patch("campaigns.conditions.unknown_tool", return_value="API tool not found"):
        response = evaluate(api, leadId=lead.pk, branchConditions=[{"type": "dnc"}, rule])
    assert response.status_code == 400
    assert response.json()["error"] == "branchConditions.1.toolId: API tool not found"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "leadId: This field is required."),
        ({"stopRules": [{"type": "default"}]}, "stopRules.0.type: Must be one of replied,"),
        (
            {"branchConditions": [{"type": "api_tool", "toolId": "t", "operator": "like"}]},
            "branchConditions.0.operator: Must be one of eq,",
        ),
        ({"branchConditions": [{"type": "no_reply_for"}]}, "branchConditions.0.hours"),
        ({"stopRules": [{"type": "tag_exists", "tag": ""}]}, "stopRules.0.tag"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, lead, body, error):
    if body:
        body = {"leadId": lead.pk, **body}
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith(error), response.json()


def test_another_workspaces_lead_is_not_found(globex_api, lead):
    response = evaluate(globex_api, leadId=lead.pk, stopRules=[{"type": "dnc"}])
    assert response.status_code == 404
    assert response.json()["error"] == "Lead not found"
    assert evaluate(globex_api, leadId="nope").status_code == 404
