"""API tool conditions at run time: the customer's API is called before the
campaign round takes its row locks, never inside its transaction, and a tool the
rate limit refused leaves the lead waiting (judged on a later round), neither
down the Default path nor past a stop rule."""

from unittest import mock

import pytest
from django.db import connection

from campaigns import tools as tools_module
from campaigns.models import ApiToolRun, BranchDecision, Enrollment
from campaigns.tools import tool_save
from messaging.models import Message
from tests.campaigns.conftest import drive, list_leads
from tests.campaigns.test_faults import SHORT_STEPS, act, texts_to
from tuco.ratelimit import Decision

pytestmark = pytest.mark.django_db(transaction=True)


def make_tool(workspace, url):
    return tool_save(
        workspace=workspace,
        name="Plan status",
        method="GET",
        url=url,
        response_mapping="data.status",
    )


def branch_on(tool):
    return [
        {"message": "Hello {firstName}", "delay": 0, "delayUnit": "minutes"},
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
                    "steps": [{"message": "Gold", "delay": 0}],
                },
                {"type": "default", "steps": [{"message": "Standard", "delay": 0}]},
            ],
        },
    ]


def stop_on(tool):
    steps = [dict(step) for step in SHORT_STEPS]
    steps[1]["stopRules"] = [
        {"type": "api_tool", "toolId": tool.pk, "operator": "eq", "value": "churned"}
    ]
    return steps


@pytest.fixture
def calls():
    """Each call to a customer's API, with whether a transaction was open then."""
    seen = []
    real = tools_module._call_all

    def recording(calls):
        seen.extend((lead.pk if lead else None, connection.in_atomic_block) for _, lead in calls)
        return real(calls)

    with mock.patch("campaigns.tools._call_all", side_effect=recording):
        yield seen


def refused():
    return mock.patch("campaigns.tools.ratelimit.take_per_minute", return_value=Decision(False, 30))


def test_a_branch_tool_is_called_outside_the_transaction_once_per_lead(
    acme, api, clock, sim, make_line, make_list, create_campaign, customer_api, calls
):
    make_line()
    lead_list = make_list(2)
    gold, silver = list_leads(lead_list)
    tool = make_tool(acme, customer_api.url + "/status?status={custom.plan}")
    gold.custom_fields = {"plan": "gold"}
    silver.custom_fields = {"plan": "silver"}
    gold.save()
    silver.save()
    campaign = create_campaign(listId=lead_list.pk, steps=branch_on(tool))
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(hours=1)
    drive(clock, rounds=4)
    assert texts_to(sim, gold.phone) == ["Hello Lead0", "Gold"]
    assert texts_to(sim, silver.phone) == ["Hello Lead1", "Standard"]
    assert sorted(calls) == sorted([(gold.pk, False), (silver.pk, False)])
    assert len(customer_api.requests) == 2


def test_a_stop_rule_tool_is_called_outside_the_transaction(
    acme, api, clock, sim, make_line, make_list, create_campaign, customer_api, calls
):
    make_line()
    lead_list = make_list(2)
    churned, active = list_leads(lead_list)
    tool = make_tool(acme, customer_api.url + "/status?status={custom.plan}")
    churned.custom_fields = {"plan": "churned"}
    churned.save()
    campaign = create_campaign(listId=lead_list.pk, steps=stop_on(tool))
    act(api, campaign["_id"], "start")
    for _ in range(3):
        drive(clock, rounds=2)
        clock.advance(hours=1)
    assert texts_to(sim, churned.phone) == ["First"]
    assert sorted(texts_to(sim, active.phone)) == ["First", "Second", "Third"]
    assert sorted(calls) == sorted([(churned.pk, False), (active.pk, False)])


def test_no_call_is_made_while_the_round_holds_its_locks(
    acme, api, clock, sim, make_line, make_list, create_campaign, customer_api, calls
):
    """The signal path and the locked round only read answers: a lead without one
    waits for the next round's fetch."""
    make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    tool = make_tool(acme, customer_api.url + "/status")
    campaign = create_campaign(listId=lead_list.pk, steps=stop_on(tool))
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(hours=1, seconds=1)
    with mock.patch("campaigns.services.fetch_tool_answers") as fetch:
        fetch.return_value = None
        drive(clock, rounds=2)
    assert calls == []
    second = Message.objects.get(lead=lead, step_index=1)
    assert (second.status, second.held) == ("scheduled", True)
    drive(clock, rounds=3)
    assert calls == [(lead.pk, False)]
    assert texts_to(sim, lead.phone) == ["First", "Second"]


def test_a_rate_limited_branch_tool_leaves_the_lead_waiting(
    acme, api, clock, sim, make_line, make_list, create_campaign, customer_api
):
    make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    lead.custom_fields = {"plan": "gold"}
    lead.save()
    tool = make_tool(acme, customer_api.url + "/status?status={custom.plan}")
    campaign = create_campaign(listId=lead_list.pk, steps=branch_on(tool))
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(hours=1)
    with refused():
        drive(clock, rounds=4)
        clock.advance(minutes=5)
        drive(clock, rounds=2)
    assert not BranchDecision.objects.exists()
    assert not ApiToolRun.objects.exists()
    assert customer_api.requests == []
    assert texts_to(sim, lead.phone) == ["Hello Lead0"]
    assert Enrollment.objects.get().state == "active"
    assert Message.objects.filter(lead=lead).count() == 1

    # Tokens are back: the lead is decided on its answer, not sent down Default.
    drive(clock, rounds=3)
    decision = BranchDecision.objects.get()
    assert (decision.path, decision.condition_type) == (0, "api_tool")
    assert texts_to(sim, lead.phone) == ["Hello Lead0", "Gold"]
    assert len(customer_api.requests) == 1


def test_a_rate_limited_stop_rule_tool_keeps_the_step_held(
    acme, api, clock, sim, make_line, make_list, create_campaign, customer_api
):
    make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    lead.custom_fields = {"plan": "churned"}
    lead.save()
    tool = make_tool(acme, customer_api.url + "/status?status={custom.plan}")
    campaign = create_campaign(listId=lead_list.pk, steps=stop_on(tool))
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    clock.advance(hours=1)
    with refused():
        drive(clock, rounds=4)
    second = Message.objects.get(lead=lead, step_index=1)
    assert (second.status, second.held) == ("scheduled", True)
    assert texts_to(sim, lead.phone) == ["First"]

    drive(clock, rounds=3)
    second.refresh_from_db()
    assert second.status == "cancelled"
    assert second.cancel_reason == (
        "Stop condition met: API tool returned “churned”: equals “churned”"
    )
    assert texts_to(sim, lead.phone) == ["First"]
