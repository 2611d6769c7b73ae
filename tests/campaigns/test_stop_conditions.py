"""Stop conditions on steps: given through the API, judged when the step comes due,
and a stopped step on record with its reason, in the stats and the lead's timeline."""

from unittest import mock

import pytest
from django.test import Client

from campaigns.models import Campaign, Enrollment, Step
from campaigns.sequencing import SEQUENCE_STOPPED
from campaigns.tools import tool_save
from leads.models import LeadTag, Tag
from messaging.inbound import inbound_record
from messaging.models import Message
from tests.campaigns.conftest import drive, list_leads
from tests.campaigns.test_faults import SHORT_STEPS, act, get, texts_to

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMER = {"type": "tag_exists", "tag": "Customer"}


def with_rules(*rules, at=1):
    steps = [dict(step) for step in SHORT_STEPS]
    steps[at]["stopRules"] = list(rules)
    return steps


def statuses(lead):
    return list(
        Message.objects.filter(lead=lead)
        .order_by("step_index")
        .values_list("status", "cancel_reason")
    )


def add_tag(lead, name):
    tag, _ = Tag.objects.get_or_create(workspace=lead.workspace, name=name)
    LeadTag.objects.create(lead=lead, tag=tag)


def test_stop_rules_are_kept_on_their_steps_with_ids(api, create_campaign):
    campaign = create_campaign(
        steps=with_rules(CUSTOMER, {"id": "mine", "type": "replied_keyword", "keyword": "price"})
    )
    rules = get(api, campaign["_id"])["steps"][1]["stopRules"]
    assert rules[0]["type"] == "tag_exists"
    assert rules[0]["tag"] == "Customer"
    assert rules[0]["id"]
    assert rules[1] == {"id": "mine", "type": "replied_keyword", "keyword": "price"}
    assert get(api, campaign["_id"])["steps"][0]["stopRules"] == []


def test_stop_rules_can_be_changed_with_patch(api, create_campaign):
    campaign = create_campaign(steps=with_rules(CUSTOMER))
    steps = with_rules({"type": "dnc"}, at=2)
    response = api.patch(f"/api/campaigns/{campaign['_id']}", {"steps": steps}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["steps"][1]["stopRules"] == []
    assert [r["type"] for r in body["steps"][2]["stopRules"]] == ["dnc"]


@pytest.mark.parametrize(
    ("rules", "at", "error"),
    [
        ([CUSTOMER], 0, "steps[0].stopRules: Stop conditions apply from step 2 on"),
        ([{"type": "hubspot"}], 1, "steps.1.stopRules.0.type: Must be one of replied,"),
        ([{"type": "tag_exists"}], 1, "steps.1.stopRules.0.tag: This condition needs a tag"),
        ([{"type": "replied_keyword", "keyword": " "}], 1, "steps.1.stopRules.0.keyword"),
        ([{"type": "api_tool", "operator": "eq", "value": "x"}], 1, "steps.1.stopRules.0.toolId"),
        (
            [{"type": "api_tool", "toolId": "t1", "operator": "equals", "value": "x"}],
            1,
            "steps.1.stopRules.0.operator: Must be one of eq, neq,",
        ),
        ([{"type": "api_tool", "toolId": "t1", "operator": "gt"}], 1, "steps.1.stopRules.0.value"),
        (
            [{"type": "api_tool", "toolId": "t1", "operator": "eq", "value": "x"}],
            1,
            "steps[1].stopRules[0].toolId: API tool not found",
        ),
        ([{"type": "no_reply_for", "hours": 4}], 1, "steps.1.stopRules.0.type"),
        ([{"type": "dnc"}] * 11, 1, "steps[1].stopRules: At most 10 stop conditions per step"),
    ],
)
def test_bad_stop_rules_are_refused_and_nothing_is_saved(api, rules, at, error):
    response = api.post(
        "/api/campaigns", {"name": "x", "steps": with_rules(*rules, at=at)}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith(error), response.json()
    assert not Campaign.objects.exists()
    assert not Step.objects.exists()


def test_an_unknown_api_tool_is_refused(api):
    rule = {"type": "api_tool", "toolId": "nope", "operator": "exists"}
    with mock.patch("campaigns.conditions.unknown_tool", return_value="API tool not found"):
        response = api.post(
            "/api/campaigns", {"name": "x", "steps": with_rules(rule)}, format="json"
        )
    assert response.status_code == 400
    assert response.json()["error"] == "steps[1].stopRules[0].toolId: API tool not found"
    assert not Campaign.objects.exists()


def test_a_tag_added_while_the_step_waits_stops_it_when_it_comes_due(
    api, alice, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(2)
    customer, other = list_leads(lead_list)
    campaign = create_campaign(listId=lead_list.pk, steps=with_rules(CUSTOMER))
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    # The step is judged when it comes due (an hour after step 1), not when step 1 went.
    clock.advance(minutes=30)
    add_tag(customer, "customer")
    for _ in range(3):
        clock.advance(hours=1)
        drive(clock, rounds=2)

    assert texts_to(sim, customer.phone) == ["First"]
    assert sorted(texts_to(sim, other.phone)) == ["First", "Second", "Third"]
    assert statuses(customer) == [
        ("sent", ""),
        ("cancelled", "Stop condition met: Lead has tag “Customer”"),
        ("cancelled", SEQUENCE_STOPPED),
    ]
    assert Enrollment.objects.get(lead=customer).state == "stopped"
    stats = get(api, campaign["_id"])["stats"]
    assert stats["stopped"] == 1
    assert stats["cancelled"] == 2
    assert get(api, campaign["_id"])["status"] == "completed"

    client = Client()
    client.force_login(alice)
    page = client.get(f"/campaigns/{campaign['_id']}/leads/{customer.pk}/").content.decode()
    assert "Stop condition met: Lead has tag “Customer”" in page
    assert page.index("First") < page.index("Stop condition met") < page.index(SEQUENCE_STOPPED)
    detail = client.get(f"/campaigns/{campaign['_id']}/").content.decode()
    assert f"/campaigns/{campaign['_id']}/leads/{customer.pk}/" in detail


def test_a_condition_that_turns_false_before_the_step_is_due_lets_it_go(
    api, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    add_tag(lead, "Customer")
    campaign = create_campaign(
        listId=lead_list.pk, steps=with_rules({"type": "tag_not_exists", "tag": "Customer"})
    )
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(minutes=50)
    LeadTag.objects.filter(lead=lead).delete()
    drive(clock, rounds=1)
    # Still waiting (not due): nothing judged yet.
    assert statuses(lead)[1] == ("scheduled", "")
    clock.advance(minutes=10)
    drive(clock, rounds=2)
    assert statuses(lead)[1][1] == "Stop condition met: Lead does not have tag “Customer”"
    assert texts_to(sim, lead.phone) == ["First"]


def test_a_keyword_reply_stops_a_continuing_sequence(
    api, acme, clock, sim, make_line, make_list, create_campaign
):
    line = make_line()
    lead_list = make_list(2)
    asker, other = list_leads(lead_list)
    campaign = create_campaign(
        listId=lead_list.pk,
        steps=with_rules({"type": "replied_keyword", "keyword": "price"}),
        settings={"replyBehavior": "continue"},
    )
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(minutes=5)
    for lead, text in ((asker, "What is the price?"), (other, "Tell me more")):
        inbound_record(workspace=acme, address=lead.phone, text=text, channel="imessage", line=line)
    for _ in range(3):
        clock.advance(hours=1)
        drive(clock, rounds=2)
    assert texts_to(sim, asker.phone) == ["First"]
    assert sorted(texts_to(sim, other.phone)) == ["First", "Second", "Third"]
    assert statuses(asker)[1] == ("cancelled", "Stop condition met: Lead replied with “price”")


def test_an_api_tool_answer_stops_the_step(
    acme, api, clock, sim, make_line, make_list, create_campaign, customer_api
):
    make_line()
    lead_list = make_list(2)
    churned, active = list_leads(lead_list)
    churned.custom_fields = {"plan": "churned"}
    churned.save()
    tool = tool_save(
        workspace=acme,
        name="Plan status",
        method="GET",
        url=customer_api.url + "/status?status={custom.plan|active}",
        response_mapping="data.status",
    )
    rule = {"type": "api_tool", "toolId": tool.pk, "operator": "eq", "value": "churned"}
    campaign = create_campaign(listId=lead_list.pk, steps=with_rules(rule))
    act(api, campaign["_id"], "start")
    for _ in range(3):
        drive(clock, rounds=2)
        clock.advance(hours=1)
    assert texts_to(sim, churned.phone) == ["First"]
    assert sorted(texts_to(sim, active.phone)) == ["First", "Second", "Third"]
    assert statuses(churned)[1] == (
        "cancelled",
        "Stop condition met: API tool returned “churned”: equals “churned”",
    )
    # One call per lead at the step with the rule, however many rounds judged it.
    assert sorted(r["path"] for r in customer_api.requests) == [
        "/status?status=active",
        "/status?status=churned",
    ]
