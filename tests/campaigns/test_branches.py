"""Branch steps: given through the API, checked, and run against the relay simulator,
each lead down exactly one path."""

from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test import Client

from campaigns.branching import decide_branches
from campaigns.conditions import Outcome
from campaigns.models import ApiToolRun, BranchDecision, Campaign, Enrollment, Step
from campaigns.services import campaigns_tick
from campaigns.tools import tool_save
from leads.models import LeadTag, Tag
from messaging.inbound import inbound_record
from messaging.models import Message
from tests.campaigns.conftest import drive, list_leads
from tests.campaigns.test_faults import act, get, texts_to
from tests.threads import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)


def branching_steps(**branch):
    return [
        {"message": "Hello {firstName}", "delay": 0, "delayUnit": "minutes"},
        {
            "type": "branch",
            "delay": 1,
            "delayUnit": "hours",
            "branches": [
                {
                    "type": "tag_exists",
                    "tag": "VIP",
                    "steps": [{"message": "VIP note", "delay": 0}],
                },
                {"type": "replied", "steps": [{"message": "Thanks for replying", "delay": 0}]},
                {
                    "type": "no_reply_for",
                    "hours": 24,
                    "steps": [
                        {"message": "Nudge", "delay": 0, "delayUnit": "minutes"},
                        {"message": "Last nudge", "delay": 1, "delayUnit": "days"},
                    ],
                },
                {"type": "default", "steps": []},
            ],
            **branch,
        },
    ]


def add_tag(lead, name):
    tag, _ = Tag.objects.get_or_create(workspace=lead.workspace, name=name)
    LeadTag.objects.create(lead=lead, tag=tag)


def test_a_branching_campaign_is_kept_and_shown_with_its_paths(api, create_campaign):
    campaign = create_campaign(steps=branching_steps())
    steps = get(api, campaign["_id"])["steps"]
    assert len(steps) == 2
    assert steps[0]["type"] == "message"
    branch = steps[1]
    assert branch["type"] == "branch"
    assert branch["delay"] == 1
    assert branch["delayUnit"] == "hours"
    assert [b["type"] for b in branch["branches"]] == [
        "tag_exists",
        "replied",
        "no_reply_for",
        "default",
    ]
    assert all(b["id"] for b in branch["branches"])
    assert branch["branches"][0]["tag"] == "VIP"
    assert branch["branches"][2]["hours"] == 24
    assert [s["message"] for s in branch["branches"][2]["steps"]] == ["Nudge", "Last nudge"]
    assert branch["branches"][3]["steps"] == []
    assert Step.objects.count() == 6


def _with_branches(branches, **extra):
    steps = branching_steps()
    steps[1] = {**steps[1], "branches": branches, **extra}
    return steps


DEFAULT = {"type": "default", "steps": []}
REPLIED = {"type": "replied", "steps": [{"message": "x"}]}


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        (_with_branches([REPLIED]), "steps[1].branches: A branch needs a Default path"),
        (_with_branches([DEFAULT]), "steps[1].branches: A branch needs a condition besides"),
        (
            _with_branches([DEFAULT, REPLIED]),
            "steps[1].branches[0].type: Default is the last path",
        ),
        (
            _with_branches([{"type": "api_tool", "toolId": "t", "operator": "is"}, DEFAULT]),
            "steps.1.branches.0.operator: Must be one of eq, neq,",
        ),
        (
            _with_branches([{"type": "no_reply_for", "hours": 0}, DEFAULT]),
            "steps.1.branches.0.hours",
        ),
        (
            _with_branches([{"type": "hubspot_property"}, DEFAULT]),
            "steps.1.branches.0.type: Must be one of",
        ),
        (
            _with_branches(
                [{"type": "replied", "steps": [{"type": "branch", "branches": [DEFAULT]}]}, DEFAULT]
            ),
            "steps[1].branches[0].steps[0].type: A branch path holds message steps only",
        ),
        (
            _with_branches([{"type": "replied", "steps": [{"message": " "}]}, DEFAULT]),
            "steps[1].branches[0].steps[0].message: A step needs a message",
        ),
        (
            _with_branches([{"type": "replied", "steps": [{"message": "Hi {nickname}"}]}, DEFAULT]),
            "steps[1].branches[0].steps[0].message: Unknown variable {nickname}",
        ),
        (
            _with_branches([REPLIED, DEFAULT], stopRules=[{"type": "dnc"}]),
            "steps[1].stopRules: A branch step has no stop conditions",
        ),
        (
            [{"type": "branch", "branches": [REPLIED, DEFAULT]}],
            "steps[0].type: A campaign starts with a message step",
        ),
        (
            [*branching_steps(), {"message": "After"}],
            "steps[1].type: A branch ends the main sequence",
        ),
        (
            [{"message": "x", "branches": [REPLIED, DEFAULT]}],
            "steps[0].branches: Only a branch step has branches",
        ),
        (
            _with_branches(
                [{"type": "tag_exists", "tag": "x", "operator": "eq", "steps": "no"}, DEFAULT]
            ),
            "steps.1.branches.0.steps",
        ),
    ],
)
def test_bad_branches_are_refused_and_nothing_is_saved(api, steps, error):
    response = api.post("/api/campaigns", {"name": "x", "steps": steps}, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith(error), response.json()
    assert not Campaign.objects.exists()
    assert not Step.objects.exists()


def test_a_branch_on_an_unknown_api_tool_is_refused(api):
    steps = _with_branches([{"type": "api_tool", "toolId": "t9", "operator": "exists"}, DEFAULT])
    with mock.patch("campaigns.conditions.unknown_tool", return_value="API tool not found"):
        response = api.post("/api/campaigns", {"name": "x", "steps": steps}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "steps[1].branches[0].toolId: API tool not found"
    assert not Campaign.objects.exists()


def test_a_bad_edit_leaves_the_steps_as_they_were(api, create_campaign):
    campaign = create_campaign(steps=branching_steps())
    before = list(Step.objects.order_by("position").values_list("position", "message"))
    response = api.patch(
        f"/api/campaigns/{campaign['_id']}",
        {"steps": _with_branches([REPLIED])},
        format="json",
    )
    assert response.status_code == 400
    assert list(Step.objects.order_by("position").values_list("position", "message")) == before


def test_each_lead_takes_one_path(
    api, acme, alice, clock, sim, make_line, make_list, create_campaign
):
    line = make_line()
    lead_list = make_list(4)
    vip, replier, silent, late = list_leads(lead_list)
    add_tag(vip, "vip")
    campaign = create_campaign(
        listId=lead_list.pk, steps=branching_steps(), settings={"replyBehavior": "continue"}
    )
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(minutes=10)
    inbound_record(workspace=acme, address=replier.phone, text="Hi!", channel="imessage", line=line)
    # The branch waits an hour after step 1.
    clock.advance(minutes=40)
    drive(clock, rounds=2)
    assert not BranchDecision.objects.exists()
    clock.advance(minutes=11)
    drive(clock, rounds=2)
    assert texts_to(sim, vip.phone) == ["Hello Lead0", "VIP note"]
    assert texts_to(sim, replier.phone) == ["Hello Lead1", "Thanks for replying"]
    # "No reply for 24 hours" waits for its hours; the lead stays at the branch.
    assert texts_to(sim, silent.phone) == ["Hello Lead2"]
    assert get(api, campaign["_id"])["status"] == "active"
    assert Enrollment.objects.get(lead=silent).state == "active"

    clock.advance(hours=12)
    inbound_record(workspace=acme, address=late.phone, text="Later", channel="imessage", line=line)
    clock.advance(hours=12)
    drive(clock, rounds=2)
    assert texts_to(sim, silent.phone) == ["Hello Lead2", "Nudge"]
    # A reply while "no reply for" waited: that condition is false, the next one true.
    assert texts_to(sim, late.phone) == ["Hello Lead3", "Thanks for replying"]
    clock.advance(days=1, minutes=1)
    drive(clock, rounds=2)
    assert texts_to(sim, silent.phone) == ["Hello Lead2", "Nudge", "Last nudge"]

    decisions = dict(BranchDecision.objects.values_list("lead_id", "condition_type"))
    assert decisions == {
        vip.pk: "tag_exists",
        replier.pk: "replied",
        silent.pk: "no_reply_for",
        late.pk: "replied",
    }
    assert set(Enrollment.objects.values_list("state", flat=True)) == {"completed"}
    assert get(api, campaign["_id"])["status"] == "completed"

    client = Client()
    client.force_login(alice)
    page = client.get(f"/campaigns/{campaign['_id']}/").content.decode()
    assert 'data-branch-path="0">1<' in page
    assert 'data-branch-path="1">2<' in page
    assert 'data-branch-path="2">1<' in page
    assert 'data-branch-path="3">0<' in page
    timeline = client.get(f"/campaigns/{campaign['_id']}/leads/{silent.pk}/").content.decode()
    assert "No reply for 1 day" in timeline
    assert timeline.index("Hello Lead2") < timeline.index("Path 3") < timeline.index("Nudge")


def test_the_default_path_can_end_the_sequence(
    api, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    steps = _with_branches(
        [{"type": "tag_exists", "tag": "vip", "steps": [{"message": "x"}]}, DEFAULT]
    )
    campaign = create_campaign(listId=lead_list.pk, steps=steps)
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(hours=1)
    drive(clock, rounds=2)
    assert texts_to(sim, lead.phone) == ["Hello Lead0"]
    decision = BranchDecision.objects.get()
    assert (decision.path, decision.condition_type, decision.detail) == (
        1,
        "default",
        "Default path",
    )
    assert Enrollment.objects.get().state == "completed"
    assert get(api, campaign["_id"])["status"] == "completed"


@pytest.mark.parametrize(
    ("path", "texts", "detail"),
    [
        ("/status?status=gold", ["Hello Lead0", "Gold"], "API tool returned “gold”: equals “gold”"),
        ("/status?status=silver", ["Hello Lead0", "Standard"], "Default path"),
        ("/slow", ["Hello Lead0", "Standard"], "Default path"),
        ("/error", ["Hello Lead0", "Standard"], "Default path"),
        ("/text", ["Hello Lead0", "Standard"], "Default path"),
    ],
    ids=["success", "other-answer", "timeout", "http-500", "not-json"],
)
def test_an_api_tool_branch_against_the_customers_api(
    acme, api, clock, sim, make_line, make_list, create_campaign, customer_api, path, texts, detail
):
    make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    tool = tool_save(
        workspace=acme,
        name="Plan",
        method="GET",
        url=customer_api.url + path,
        response_mapping="data.status",
    )
    gold = {"type": "api_tool", "toolId": tool.pk, "operator": "eq", "value": "gold", "steps": [
        {"message": "Gold"}]}  # fmt: skip
    steps = _with_branches([gold, {"type": "default", "steps": [{"message": "Standard"}]}])
    campaign = create_campaign(listId=lead_list.pk, steps=steps)
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(hours=1)
    drive(clock, rounds=3)
    assert texts_to(sim, lead.phone) == texts
    decision = BranchDecision.objects.get()
    assert decision.detail == detail
    # A failure is an answer too: kept, and the API asked once.
    assert len(customer_api.requests) == 1
    assert ApiToolRun.objects.filter(lead=lead).count() == 1


def test_deciding_twice_takes_one_path(api, clock, sim, make_line, make_list, create_campaign):
    make_line()
    lead_list = make_list(1)
    campaign = create_campaign(listId=lead_list.pk, steps=branching_steps())
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(days=2)
    campaign = Campaign.objects.get()
    assert decide_branches(campaign=campaign, now=clock.now) == 1
    assert decide_branches(campaign=campaign, now=clock.now) == 0
    assert BranchDecision.objects.count() == 1
    assert Message.objects.filter(step_index__gte=100).count() == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need Postgres")
def test_two_workers_deciding_at_once_take_one_path(
    api, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(1)
    campaign = create_campaign(listId=lead_list.pk, steps=branching_steps())
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(days=2)
    campaign = Campaign.objects.get()
    # Each worker finds a different path (the lead changed between their reads).
    answers = iter([(0, Outcome(True, "first")), (2, Outcome(True, "second"))])

    def choose(conditions, context):
        return next(answers)

    with mock.patch("campaigns.branching.choose_branch", side_effect=choose):
        outcomes = run_in_threads(
            lambda i: decide_branches(campaign=Campaign.objects.get(), now=clock.now), 2
        )
    assert sorted(outcomes) == [0, 1]
    (decision,) = BranchDecision.objects.all()
    path_messages = set(
        Message.objects.filter(step_index__gte=100).values_list("step_index", flat=True)
    )
    expected = {100} if decision.path == 0 else {300, 301}
    assert path_messages == expected


def test_editing_a_running_campaign_applies_to_leads_that_have_not_reached_the_steps(
    api, clock, sim, make_line, make_list, create_campaign
):
    from tests.campaigns.test_faults import SHORT_STEPS

    make_line()
    lead_list = make_list(2)
    ahead, behind = list_leads(lead_list)
    campaign = create_campaign(steps=SHORT_STEPS)
    act(api, campaign["_id"], "start")
    api.post(f"/api/campaigns/{campaign['_id']}/leads", {"leadId": ahead.pk}, format="json")
    drive(clock, rounds=2)
    clock.advance(hours=1)
    drive(clock, rounds=2)
    assert texts_to(sim, ahead.phone) == ["First", "Second"]
    api.post(f"/api/campaigns/{campaign['_id']}/leads", {"leadId": behind.pk}, format="json")
    drive(clock, rounds=2)

    steps = [
        SHORT_STEPS[0],
        {**SHORT_STEPS[1], "message": "Second, edited"},
        {**SHORT_STEPS[2], "message": "Third, edited"},
        {"message": "Fourth", "delay": 1, "delayUnit": "hours"},
    ]
    response = api.patch(f"/api/campaigns/{campaign['_id']}", {"steps": steps}, format="json")
    assert response.status_code == 200, response.json()
    for _ in range(4):
        clock.advance(hours=1)
        drive(clock, rounds=2)
    assert texts_to(sim, ahead.phone) == ["First", "Second", "Third, edited", "Fourth"]
    assert texts_to(sim, behind.phone) == ["First", "Second, edited", "Third, edited", "Fourth"]
    assert get(api, campaign["_id"])["status"] == "completed"


def test_a_branch_added_to_a_running_campaign_takes_the_leads_that_reach_it(
    api, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    campaign = create_campaign(listId=lead_list.pk, steps=branching_steps()[:1])
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    assert get(api, campaign["_id"])["status"] == "completed"
    # A completed lead is done: the new branch is for leads still in the sequence.
    steps = _with_branches([{"type": "default", "steps": [{"message": "More"}]}])
    response = api.patch(f"/api/campaigns/{campaign['_id']}", {"steps": steps}, format="json")
    assert response.status_code == 400  # a branch needs a condition besides Default
    steps = _with_branches([REPLIED, {"type": "default", "steps": [{"message": "More"}]}])
    response = api.patch(f"/api/campaigns/{campaign['_id']}", {"steps": steps}, format="json")
    assert response.status_code == 200, response.json()
    clock.advance(hours=2)
    drive(clock, rounds=2)
    assert texts_to(sim, lead.phone) == ["Hello Lead0"]


def test_contacted_before_and_a_tag_added_on_the_way_choose_their_paths(
    acme, api, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(3)
    known, tagged, other = list_leads(lead_list)
    # `known` heard from this workspace days ago, outside the campaign.
    Message.objects.create(
        workspace=acme,
        lead=known,
        recipient_phone=known.phone,
        body="Earlier",
        status="sent",
        sent_at=clock.now - timedelta(days=3),
    )
    steps = _with_branches(
        [
            {"type": "contacted_before", "steps": [{"message": "Welcome back"}]},
            {"type": "tag_exists", "tag": "hot", "steps": [{"message": "Hot lead"}]},
            {"type": "default", "steps": [{"message": "Standard"}]},
        ]
    )
    campaign = create_campaign(listId=lead_list.pk, steps=steps)
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    # While the branch waits its hour, the CRM tags a lead.
    response = api.post(f"/api/leads/{tagged.pk}/tags", {"add": ["Hot"]}, format="json")
    assert response.status_code == 200, response.json()
    clock.advance(hours=1)
    drive(clock, rounds=3)
    assert texts_to(sim, known.phone) == ["Hello Lead0", "Welcome back"]
    assert texts_to(sim, tagged.phone) == ["Hello Lead1", "Hot lead"]
    assert texts_to(sim, other.phone) == ["Hello Lead2", "Standard"]
    decisions = dict(BranchDecision.objects.values_list("lead_id", "condition_type"))
    assert decisions == {
        known.pk: "contacted_before",
        tagged.pk: "tag_exists",
        other.pk: "default",
    }


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need Postgres")
def test_two_rounds_at_once_ask_the_api_and_take_one_path(
    acme, api, clock, sim, make_line, make_list, create_campaign, customer_api
):
    """Two workers judge the same lead at the same branch at once, and the customer's
    API answers each of them differently: the answer kept first is the lead's, and
    the path follows it."""
    make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    tool = tool_save(
        workspace=acme,
        name="Plan",
        method="GET",
        url=customer_api.url + "/flip",
        response_mapping="data.status",
    )
    gold = {"type": "api_tool", "toolId": tool.pk, "operator": "eq", "value": "gold", "steps": [
        {"message": "Gold"}]}  # fmt: skip
    steps = _with_branches([gold, {"type": "default", "steps": [{"message": "Standard"}]}])
    campaign = create_campaign(listId=lead_list.pk, steps=steps)
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(hours=1)
    outcomes = run_in_threads(lambda i: campaigns_tick(), 2)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    drive(clock, rounds=3)
    (kept,) = ApiToolRun.objects.all()
    (decision,) = BranchDecision.objects.all()
    assert decision.path == (0 if kept.value == "gold" else 1)
    assert texts_to(sim, lead.phone) == [
        "Hello Lead0",
        "Gold" if decision.path == 0 else "Standard",
    ]
    assert Message.objects.filter(step_index__gte=100).count() == 1
