"""Each stop / branch condition and each operator, judged for one lead."""

from datetime import UTC, date, datetime, timedelta
from unittest import mock

import pytest

from campaigns.conditions import (
    Context,
    Rule,
    choose_branch,
    compare,
    evaluate,
    first_true,
)
from leads.models import Lead, LeadIdentifier, LeadTag, Tag
from messaging.inbound import inbound_record
from messaging.models import DoNotContact, Message

NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)


@pytest.fixture
def lead(acme):
    lead = Lead.objects.create(workspace=acme, first_name="Ada", phone="+12025550100")
    LeadIdentifier.objects.create(workspace=acme, value=lead.phone, lead=lead, field="phone")
    return lead


def ctx(lead, **kwargs):
    kwargs.setdefault("now", NOW)
    return Context(workspace=lead.workspace, lead=lead, **kwargs)


def judge(lead, **rule_and_context):
    context_keys = ("now", "campaign_id", "since", "last_sent_at", "step")
    context = {k: rule_and_context.pop(k) for k in context_keys if k in rule_and_context}
    lead.refresh_from_db()
    return evaluate(Rule(**rule_and_context), ctx(lead, **context))


def reply(lead, text, at=None):
    inbound_record(
        workspace=lead.workspace, address=lead.phone, text=text, channel="imessage", received_at=at
    )


def sent(lead, campaign_id="", at=NOW, status="sent"):
    return Message.objects.create(
        workspace=lead.workspace,
        lead=lead,
        recipient_phone=lead.phone,
        body="Hello",
        campaign_id=campaign_id,
        status=status,
        sent_at=at,
    )


def tag(lead, name):
    found = Tag.objects.create(workspace=lead.workspace, name=name)
    LeadTag.objects.create(lead=lead, tag=found)


# --------------------------------------------------------------------------- conditions


def test_replied_is_true_once_the_lead_replied_since_it_entered(lead):
    assert judge(lead, type="replied").result is False
    reply(lead, "Sounds good", at=NOW - timedelta(hours=2))
    assert judge(lead, type="replied").result is True
    assert judge(lead, type="replied", since=NOW - timedelta(hours=3)).result is True
    # A reply from before the lead entered the campaign does not count.
    outcome = judge(lead, type="replied", since=NOW - timedelta(hours=1))
    assert outcome.result is False
    assert outcome.detail == "Lead has not replied"


def test_replied_keyword_matches_a_reply_containing_the_word_in_any_case(lead):
    assert judge(lead, type="replied_keyword", keyword="price").result is False
    reply(lead, "What's the PRICE?", at=NOW - timedelta(minutes=5))
    outcome = judge(lead, type="replied_keyword", keyword="price")
    assert (outcome.result, outcome.detail) == (True, "Lead replied with “price”")
    assert judge(lead, type="replied_keyword", keyword="demo").result is False
    later = NOW - timedelta(minutes=1)
    assert judge(lead, type="replied_keyword", keyword="price", since=later).result is False


def test_tag_exists_and_not_exists_ignore_case(lead):
    assert judge(lead, type="tag_exists", tag="Customer").result is False
    assert judge(lead, type="tag_not_exists", tag="Customer").result is True
    tag(lead, "customer")
    outcome = judge(lead, type="tag_exists", tag="Customer")
    assert (outcome.result, outcome.detail) == (True, "Lead has tag “Customer”")
    assert judge(lead, type="tag_not_exists", tag="CUSTOMER").result is False


def test_a_tag_of_another_lead_does_not_count(acme, lead):
    other = Lead.objects.create(workspace=acme, phone="+12025550101")
    tag(other, "vip")
    assert judge(lead, type="tag_exists", tag="vip").result is False


def test_contacted_before_counts_messages_outside_this_campaign_that_reached_the_lead(lead):
    sent(lead, campaign_id="c1")
    assert judge(lead, type="contacted_before", campaign_id="c1").result is False
    # Without a campaign, any message that reached the lead counts.
    assert judge(lead, type="contacted_before").result is True
    sent(lead, status="failed")
    assert judge(lead, type="contacted_before", campaign_id="c1").result is False
    sent(lead, status="delivered")
    outcome = judge(lead, type="contacted_before", campaign_id="c1")
    assert (outcome.result, outcome.detail) == (True, "Lead was contacted outside this campaign")


def test_contacted_before_any_counts_other_campaigns_only(lead):
    sent(lead)  # a one-off message
    sent(lead, campaign_id="c1")
    assert judge(lead, type="contacted_before_any", campaign_id="c1").result is False
    assert judge(lead, type="contacted_before_any").result is True
    sent(lead, campaign_id="c2", status="fallback")
    outcome = judge(lead, type="contacted_before_any", campaign_id="c1")
    assert (outcome.result, outcome.detail) == (True, "Lead was contacted in another campaign")


def test_dnc_is_true_for_a_listed_identifier_or_an_opt_out(acme, lead):
    assert judge(lead, type="dnc").result is False
    DoNotContact.objects.create(workspace=acme, value=lead.phone, kind="phone")
    assert judge(lead, type="dnc").detail == "Lead is on the do-not-contact list"
    DoNotContact.objects.all().delete()
    Lead.objects.filter(pk=lead.pk).update(opted_out=True)
    outcome = judge(lead, type="dnc")
    assert (outcome.result, outcome.detail) == (True, "Lead opted out")


def test_dnc_of_another_workspace_does_not_count(globex, lead):
    DoNotContact.objects.create(workspace=globex, value=lead.phone, kind="phone")
    assert judge(lead, type="dnc").result is False


def test_no_reply_for_waits_then_answers(lead):
    start = NOW - timedelta(hours=10)
    waiting = judge(lead, type="no_reply_for", hours=24, last_sent_at=start)
    assert waiting.result is None
    assert waiting.retry_at == start + timedelta(hours=24)
    later = start + timedelta(hours=24)
    done = judge(lead, type="no_reply_for", hours=24, last_sent_at=start, now=later)
    assert (done.result, done.detail) == (True, "No reply for 1 day")
    reply(lead, "Hi", at=start + timedelta(hours=1))
    assert judge(lead, type="no_reply_for", hours=24, last_sent_at=start).result is False


def test_no_reply_for_starts_from_the_last_message_that_reached_the_lead(lead):
    assert judge(lead, type="no_reply_for", hours=2).result is False
    sent(lead, at=NOW - timedelta(hours=3))
    assert judge(lead, type="no_reply_for", hours=2).detail == "No reply for 2 hours"
    assert judge(lead, type="no_reply_for", hours=4).result is None


def test_default_is_always_true(lead):
    assert judge(lead, type="default").result is True


def test_an_unknown_type_is_never_true(lead):
    assert judge(lead, type="hubspot_property").result is False


# --------------------------------------------------------------------------- API tools


def test_api_tool_compares_the_tools_answer(lead):
    with mock.patch(
        "campaigns.conditions._tool_value", return_value=(True, {"plan": "pro"}, "")
    ) as tool:
        outcome = judge(lead, type="api_tool", tool_id="t1", operator="contains", value="PRO")
    assert outcome.result is True
    assert outcome.detail == 'API tool returned {"plan": "pro"}: contains “PRO”'
    tool.assert_called_once()
    assert tool.call_args.args[1:3] == ("t1", lead)


def test_api_tool_is_not_met_when_the_tool_fails(lead):
    with mock.patch("campaigns.conditions._tool_value", return_value=(False, None, "HTTP 500")):
        outcome = judge(lead, type="api_tool", tool_id="t1", operator="not_exists")
    assert (outcome.result, outcome.detail) == (False, "API tool failed: HTTP 500")


def test_api_tool_that_does_not_exist_is_not_met(lead):
    outcome = judge(lead, type="api_tool", tool_id="t1", operator="eq", value="x")
    assert outcome.result is False
    assert outcome.detail == "API tool failed: API tool not found"


def test_one_tool_is_asked_once_per_evaluation(lead):
    rules = [
        Rule(type="api_tool", tool_id="t1", operator="eq", value="a"),
        Rule(type="api_tool", tool_id="t1", operator="eq", value="b"),
    ]
    with mock.patch("campaigns.conditions._tool_value", return_value=(True, "b", "")) as tool:
        rule, outcome = first_true(rules, ctx(lead))
    assert rule is rules[1]
    assert tool.call_count == 1


# --------------------------------------------------------------------------- branches


def test_choose_branch_takes_the_first_true_condition(lead):
    tag(lead, "vip")
    conditions = [
        Rule(type="replied"),
        Rule(type="tag_exists", tag="vip"),
        Rule(type="default"),
    ]
    index, outcome = choose_branch(conditions, ctx(lead))
    assert index == 1
    assert outcome.detail == "Lead has tag “vip”"


def test_choose_branch_waits_on_a_no_reply_condition_not_yet_answered(lead):
    conditions = [Rule(type="no_reply_for", hours=48), Rule(type="default")]
    index, outcome = choose_branch(conditions, ctx(lead, last_sent_at=NOW - timedelta(hours=1)))
    assert index is None
    assert outcome.retry_at == NOW + timedelta(hours=47)
    index, _ = choose_branch(conditions, ctx(lead, last_sent_at=NOW - timedelta(hours=48)))
    assert index == 0


def test_choose_branch_falls_to_default(lead):
    conditions = [Rule(type="replied"), Rule(type="default")]
    assert choose_branch(conditions, ctx(lead))[0] == 1


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("operator", "actual", "expected", "result"),
    [
        ("eq", "active", "Active", True),
        ("eq", " active ", "active", True),
        ("eq", "active", "inactive", False),
        ("eq", 10, "10.0", True),
        ("eq", "10", "10", True),
        ("eq", True, "true", True),
        ("eq", None, "x", False),
        ("neq", "active", "inactive", True),
        ("neq", "active", "ACTIVE", False),
        ("neq", None, "x", True),
        ("neq", 3, "3", False),
        ("contains", "Premium plan", "plan", True),
        ("contains", "Premium plan", "PREMIUM", True),
        ("contains", "Basic", "plan", False),
        ("contains", ["a", "b"], "b", True),
        ("contains", None, "x", False),
        ("not_contains", "Basic", "plan", True),
        ("not_contains", "Premium plan", "plan", False),
        ("starts_with", "Premium plan", "prem", True),
        ("starts_with", "Premium plan", "plan", False),
        ("gt", 10, "9", True),
        ("gt", "10", "10", False),
        ("gt", "abc", "1", False),
        ("gt", True, "0", False),
        ("gte", "10", "10", True),
        ("gte", 9.5, "10", False),
        ("lt", "-1", "0", True),
        ("lt", 5, "5", False),
        ("lte", 5, "5", True),
        ("lte", 6, "5", False),
        ("lte", None, "5", False),
        ("gt_date", "2026-03-05", "2026-03-04", True),
        ("gt_date", "2026-03-04T10:00:00Z", "2026-03-04T11:00:00+00:00", False),
        ("gt_date", date(2026, 3, 5), "2026-03-04", True),
        ("gt_date", "soon", "2026-03-04", False),
        ("lt_date", "2026-03-03T23:59:59Z", "2026-03-04", True),
        ("lt_date", "2026-03-05", "2026-03-04", False),
        ("exists", "x", "", True),
        ("exists", 0, "", True),
        ("exists", False, "", True),
        ("exists", "", "", False),
        ("exists", None, "", False),
        ("exists", [], "", False),
        ("exists", {}, "", False),
        ("not_exists", None, "", True),
        ("not_exists", "", "", True),
        ("not_exists", "x", "", False),
    ],
)
def test_operator(operator, actual, expected, result):
    assert compare(operator, actual, expected)[0] is result


def test_operator_details_say_why():
    assert compare("gt", "abc", "1") == (False, "not a number, so not greater than “1”")
    assert compare("lt_date", "2026-01-01", "2026-02-01") == (True, "before “2026-02-01”")
    assert compare("eq", "a", "b") == (False, "not equals “b”")
    assert compare("exists", None, "") == (False, "has no value")


def test_rules_round_trip_as_the_api_shows_them():
    rule = Rule(type="api_tool", id="r1", tool_id="t1", operator="gte", value="5")
    data = rule.as_dict()
    assert data == {"id": "r1", "type": "api_tool", "toolId": "t1", "operator": "gte", "value": "5"}
    assert Rule.from_dict(data) == rule
    assert Rule(type="no_reply_for", id="r2", hours=48).as_dict() == {
        "id": "r2",
        "type": "no_reply_for",
        "hours": 48,
    }
    assert Rule(type="tag_exists", id="r3", tag="vip").as_dict() == {
        "id": "r3",
        "type": "tag_exists",
        "tag": "vip",
    }
