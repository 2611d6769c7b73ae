"""POST /api/campaigns/{id}/dry-run: the path a lead would take, sending nothing; and
the real run that follows takes that path."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import ApiToolRun, BranchDecision, Enrollment
from campaigns.sequencing import REPLIED
from campaigns.tools import tool_save
from leads.models import AvailabilityCacheEntry, LeadTag, Tag
from lines.models import LineUsage
from messaging.inbound import inbound_record
from messaging.models import Message
from tests.campaigns.conftest import drive, list_leads
from tests.campaigns.test_faults import act, texts_to

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = [
    {"message": "Hello {firstName|there}", "delay": 0, "delayUnit": "minutes"},
    {
        "message": "Second for {firstName}",
        "delay": 1,
        "delayUnit": "hours",
        "stopRules": [{"id": "customer", "type": "tag_exists", "tag": "customer"}],
    },
    {
        "type": "branch",
        "delay": 1,
        "delayUnit": "hours",
        "branches": [
            {"type": "replied", "steps": [{"message": "Thanks!", "delay": 0}]},
            {
                "type": "no_reply_for",
                "hours": 24,
                "steps": [
                    {"message": "Nudge", "delay": 0},
                    {"message": "Last nudge", "delay": 1, "delayUnit": "days"},
                ],
            },
            {"type": "default", "steps": []},
        ],
    },
]


def dry_run(api, campaign_id, lead, **body):
    response = api.post(
        f"/api/campaigns/{campaign_id}/dry-run", {"leadId": lead.pk, **body}, format="json"
    )
    assert response.status_code == 200, response.json()
    return response.json()


def sent_texts(body):
    return [s["text"] for s in body["steps"] if s["kind"] == "message" and not s["stopped"]]


def test_the_dry_run_shows_the_whole_path_and_the_real_run_takes_it(
    api, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    campaign = create_campaign(listId=lead_list.pk, steps=STEPS)
    body = dry_run(api, campaign["_id"], lead)

    assert body["outcome"] == "completed"
    assert [s["label"] for s in body["steps"]] == [
        "Step 1",
        "Step 2",
        "Branch at step 3",
        "Path 2, step 1",
        "Path 2, step 2",
    ]
    assert sent_texts(body) == ["Hello Lead0", "Second for Lead0", "Nudge", "Last nudge"]
    step2 = body["steps"][1]
    assert step2["wait"] == "1 hour later"
    assert step2["stopResults"] == [
        {
            "ruleId": "customer",
            "type": "tag_exists",
            "result": False,
            "detail": "Lead does not have tag “customer”",
        }
    ]
    branch = body["steps"][2]["branch"]
    assert (branch["path"], branch["type"], branch["detail"]) == (
        1,
        "no_reply_for",
        "No reply for 1 day",
    )
    assert [r["result"] for r in branch["results"]] == [False, True, True]
    assert body["steps"][0]["channel"] == "imessage_unchecked"
    # The branch waits an hour after step 2, then 24 hours for a reply.
    at = [s["at"] for s in body["steps"]]
    assert at[3] == at[2]
    # Nothing was written or sent.
    assert not Message.objects.exists()
    assert not Enrollment.objects.exists()
    assert not BranchDecision.objects.exists()
    assert not LineUsage.objects.exists()
    assert sim.sent == []

    act(api, campaign["_id"], "start")
    for _ in range(6):
        drive(clock, rounds=2)
        clock.advance(hours=12)
    assert texts_to(sim, lead.phone) == sent_texts(body)
    assert BranchDecision.objects.get().path == branch["path"]
    # Now the relay has said the lead is on iMessage.
    assert dry_run(api, campaign["_id"], lead)["steps"][0]["channel"] == "imessage"


def test_a_played_reply_stops_the_sequence_with_reply_behavior_stop(
    api, make_list, create_campaign
):
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    campaign = create_campaign(steps=STEPS)
    body = dry_run(api, campaign["_id"], lead, replies=[{"afterMessage": 1, "text": "Hi"}])
    assert body["outcome"] == "stopped"
    assert body["reason"] == REPLIED
    assert body["steps"][0]["reply"] == "Hi"
    assert body["steps"][1]["stopped"] == REPLIED
    assert sent_texts(body) == ["Hello Lead0"]


def test_a_played_reply_takes_the_replied_branch_when_the_sequence_continues(
    api, make_list, create_campaign
):
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    campaign = create_campaign(steps=STEPS, settings={"replyBehavior": "continue"})
    body = dry_run(api, campaign["_id"], lead, replies=[{"afterMessage": 2, "text": "Sure"}])
    assert sent_texts(body) == ["Hello Lead0", "Second for Lead0", "Thanks!"]
    assert body["steps"][2]["branch"]["type"] == "replied"
    assert not Message.objects.exists()


def test_a_stop_condition_met_ends_the_dry_run_where_the_real_run_would_stop(
    api, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    tag = Tag.objects.create(workspace=lead.workspace, name="Customer")
    LeadTag.objects.create(lead=lead, tag=tag)
    campaign = create_campaign(listId=lead_list.pk, steps=STEPS)
    body = dry_run(api, campaign["_id"], lead)
    assert body["outcome"] == "stopped"
    assert body["steps"][1]["stopped"] == "Stop condition met: Lead has tag “customer”"
    assert sent_texts(body) == ["Hello Lead0"]
    act(api, campaign["_id"], "start")
    for _ in range(4):
        drive(clock, rounds=2)
        clock.advance(hours=1)
    assert texts_to(sim, lead.phone) == sent_texts(body)
    assert Message.objects.get(step_index=1).cancel_reason == body["steps"][1]["stopped"]


def test_the_channel_follows_what_is_known_of_the_lead(
    api, acme, make_list, create_campaign, twilio
):
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    steps = [{"message": "Hi", "smsFallbackMessage": "Hi by SMS"}]
    campaign = create_campaign(steps=steps)
    now = timezone.now()
    AvailabilityCacheEntry.objects.create(
        workspace=acme,
        address=lead.phone,
        available=False,
        checked_at=now,
        expires_at=now + timedelta(days=1),
    )
    assert dry_run(api, campaign["_id"], lead)["steps"][0]["channel"] == "sms_fallback"


def test_a_lead_on_the_do_not_contact_list_hears_nothing(acme, api, make_list, create_campaign):
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    campaign = create_campaign(steps=STEPS)
    inbound_record(workspace=acme, address=lead.phone, text="STOP", channel="sms")
    body = dry_run(api, campaign["_id"], lead)
    assert body["outcome"] == "stopped"
    assert body["steps"] == []


def test_unknown_or_foreign_ids_are_not_found(api, globex_api, make_list, create_campaign):
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    campaign = create_campaign(steps=STEPS)
    url = f"/api/campaigns/{campaign['_id']}/dry-run"
    assert api.post(url, {"leadId": "nope"}, format="json").status_code == 404
    assert globex_api.post(url, {"leadId": lead.pk}, format="json").status_code == 404
    response = api.post(url, {"leadId": lead.pk, "replies": [{"text": "x"}]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("replies.0.afterMessage")


def test_an_api_tool_branch_is_asked_live_and_the_real_run_takes_the_same_path(
    acme, api, clock, sim, make_line, make_list, create_campaign, customer_api
):
    make_line()
    lead_list = make_list(2)
    gold, silver = list_leads(lead_list)
    gold.custom_fields = {"plan": "gold"}
    gold.save()
    tool = tool_save(
        workspace=acme,
        name="Plan",
        method="GET",
        url=customer_api.url + "/status?status={custom.plan|silver}",
        response_mapping="data.status",
    )
    steps = [
        STEPS[0],
        {
            "type": "branch",
            "delay": 1,
            "delayUnit": "hours",
            "branches": [
                {
                    "type": "api_tool",
                    "toolId": tool.pk,
                    "operator": "eq",
                    "value": "gold",
                    "steps": [{"message": "Gold for {firstName}", "delay": 0}],
                },
                {"type": "default", "steps": [{"message": "Standard", "delay": 0}]},
            ],
        },
    ]
    campaign = create_campaign(listId=lead_list.pk, steps=steps)
    plans = {lead.pk: dry_run(api, campaign["_id"], lead) for lead in (gold, silver)}
    assert sent_texts(plans[gold.pk]) == ["Hello Lead0", "Gold for Lead0"]
    assert sent_texts(plans[silver.pk]) == ["Hello Lead1", "Standard"]
    assert plans[gold.pk]["steps"][1]["branch"]["detail"] == (
        "API tool returned “gold”: equals “gold”"
    )
    # Asked live, and nothing kept: the real run asks again.
    assert len(customer_api.requests) == 2
    assert not ApiToolRun.objects.exists()

    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(hours=1)
    drive(clock, rounds=3)
    for lead in (gold, silver):
        assert texts_to(sim, lead.phone) == sent_texts(plans[lead.pk])
        decision = BranchDecision.objects.get(lead=lead)
        assert decision.path == plans[lead.pk]["steps"][1]["branch"]["path"]
    assert len(customer_api.requests) == 4
    assert ApiToolRun.objects.count() == 2
