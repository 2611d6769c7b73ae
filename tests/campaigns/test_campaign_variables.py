"""Message variables in campaign steps: checked when the campaign is saved, filled at
send time with the lead, the line that sends and the workspace's API tools (one call
per tool, lead and step), sent through the relay simulator over real HTTP."""

import pytest

from campaigns.models import ApiToolRun
from messaging.models import Message
from tests.campaigns.conftest import drive, list_leads

STEP = (
    "Hi {firstName|there}, {line_name} here. Status: {api_check_status|unknown}. "
    "Plan: {custom.plan|basic}"
)


@pytest.fixture
def tool(api, customer_api):
    def make(path="/status?phone={phone}", name="Check Status"):
        body = {"name": name, "method": "GET", "url": customer_api.url + path,
                "responseMapping": "data.status"}  # fmt: skip
        response = api.post("/api/campaign-tools", body, format="json")
        assert response.status_code == 200, response.json()
        return response.json()["tool"]

    return make


def one_step(message, **fields):
    return [{"message": message, "delay": 0, "delayUnit": "minutes", **fields}]


# Saving


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("Hi {nickname}", "steps[0].message: Unknown variable {nickname}: use firstName"),
        ("Hi {plan|x}", "e.g. {custom.plan}"),
        ("Hi {api_missing|x}", "Unknown variable {api_missing}: no API tool of this workspace"),
        ("Hi {custom.}", "Unknown variable {custom.}"),
    ],
)
def test_a_step_with_an_unknown_variable_is_a_400(api, message, error):
    response = api.post("/api/campaigns", {"name": "C", "steps": one_step(message)}, format="json")
    assert response.status_code == 400
    assert error in response.json()["error"]


def test_every_known_variable_is_accepted(api, tool):
    tool()
    text = (
        "{firstName} {lastName} {companyName} {jobTitle} {email} {phone} {line_name} "
        "{{firstName|x}} {custom.anything|y} {api_check_status|z} {not a placeholder}"
    )
    response = api.post("/api/campaigns", {"name": "C", "steps": one_step(text)}, format="json")
    assert response.status_code == 201, response.json()


def test_an_update_is_checked_too_and_names_the_step(api, create_campaign):
    campaign = create_campaign()
    steps = [s | {} for s in campaign["steps"]]
    steps[1]["message"] = "Still there {fristName}?"
    response = api.patch(f"/api/campaigns/{campaign['_id']}", {"steps": steps}, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("steps[1].message: Unknown variable {fristName}")


# Sending


@pytest.mark.django_db(transaction=True)
def test_a_step_is_rendered_with_the_lead_the_line_and_the_tool(
    api, clock, sim, make_line, make_list, create_campaign, tool, customer_api
):
    tool()
    line = make_line(first_name="Ava", last_name="Line")
    lead_list = make_list(2)
    first, second = list_leads(lead_list)
    first.custom_fields = {"plan": "gold"}
    first.save()
    second.first_name = ""
    second.save()
    campaign = create_campaign(listId=lead_list.pk, lineIds=[line.pk], steps=one_step(STEP))
    api.put("/api/campaigns", {"campaignId": campaign["_id"], "action": "start"}, format="json")
    drive(clock, rounds=3)

    texts = sorted(m["text"] for m in sim.sent)
    assert texts == sorted(
        [
            f"Hi {first.first_name}, Ava Line here. Status: active. Plan: gold",
            "Hi there, Ava Line here. Status: active. Plan: basic",
        ]
    )
    # What was sent is what the API, webhooks and the unibox show.
    assert sorted(Message.objects.values_list("rendered_body", flat=True)) == texts
    # One call per lead for the step, with the lead's phone; the answers are kept.
    assert sorted(r["path"] for r in customer_api.requests) == sorted(
        f"/status?phone=%2B{lead.phone[1:]}" for lead in (first, second)
    )
    assert ApiToolRun.objects.count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/error", "/text", "/slow"])
def test_a_failing_tool_sends_the_fallback(
    api, clock, sim, make_line, make_list, create_campaign, tool, path
):
    tool(path=path)
    line = make_line(first_name="Ava")
    lead_list = make_list(1)
    campaign = create_campaign(
        listId=lead_list.pk,
        lineIds=[line.pk],
        steps=one_step("Status: {api_check_status|unknown}"),
    )
    api.put("/api/campaigns", {"campaignId": campaign["_id"], "action": "start"}, format="json")
    drive(clock, rounds=3)
    assert [m["text"] for m in sim.sent] == ["Status: unknown"]
    assert Message.objects.get().status == Message.Status.SENT


@pytest.mark.django_db(transaction=True)
def test_over_the_tools_rate_limit_a_send_waits_instead_of_using_the_fallback(
    api, clock, sim, make_line, make_list, create_campaign, tool, settings
):
    settings.API_TOOLS_CALLS_PER_MINUTE = 1
    tool()
    line = make_line()
    lead_list = make_list(2)
    campaign = create_campaign(
        listId=lead_list.pk, lineIds=[line.pk], steps=one_step("Status: {api_check_status|x}")
    )
    api.put("/api/campaigns", {"campaignId": campaign["_id"], "action": "start"}, format="json")
    drive(clock, rounds=3)
    assert [m["text"] for m in sim.sent] == ["Status: active"]
    waiting = Message.objects.exclude(status=Message.Status.SENT).get()
    assert waiting.status == Message.Status.SCHEDULED
    # Due again once the tool has a call to spare (nothing was sent, no fallback).
    assert waiting.due_at > clock.now


@pytest.mark.django_db(transaction=True)
def test_a_direct_message_uses_a_tool_too(api, clock, sim, make_line, tool, customer_api):
    tool(path="/status?status=vip")
    make_line(first_name="Ava", last_name="Line")
    response = api.post(
        "/api/messages",
        {"recipientPhone": "+12025550100", "message": "You are {api_check_status|x}, {line_name}"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    drive(clock, rounds=2)
    assert [m["text"] for m in sim.sent] == ["You are vip, Ava Line"]
    assert ApiToolRun.objects.count() == 0
