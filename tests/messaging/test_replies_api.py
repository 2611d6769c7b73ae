import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.inbound import inbound_record
from messaging.models import InboundMessage, Message

CAMPAIGN = "c" * 24


def iso(value):
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(autouse=True)
def campaigns():
    """Campaign CAMPAIGN exists in every workspace that has a message of it."""
    from messaging.signals import campaign_names_requested

    def names(sender, workspace_id, campaign_ids, **kwargs):
        known = Message.objects.filter(workspace_id=workspace_id, campaign_id__in=campaign_ids)
        return {cid: f"Campaign {cid[:4]}" for cid in known.values_list("campaign_id", flat=True)}

    campaign_names_requested.connect(names)
    yield
    campaign_names_requested.disconnect(names)


def make_lead(workspace, **data):
    from leads.services import lead_get_or_create

    return lead_get_or_create(workspace=workspace, data=data)[0]


@pytest.fixture
def lead(acme):
    return make_lead(acme, firstName="Lee", lastName="Reed", phone="+14155550002")


def sent(workspace, lead, minutes_ago, campaign_id="", **fields):
    return Message.objects.create(
        workspace=workspace,
        lead=lead,
        body=f"Step {minutes_ago}",
        recipient_phone=lead.phone,
        status="sent",
        sent_at=timezone.now() - timedelta(minutes=minutes_ago),
        campaign_id=campaign_id,
        **fields,
    )


def reply(workspace, address, text, minutes_ago=0, guid=None):
    return inbound_record(
        workspace=workspace,
        address=address,
        text=text,
        channel="imessage",
        external_id=guid or uuid.uuid4().hex,
        received_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def test_it_lists_one_item_per_lead_latest_first(api, acme, lead):
    other = make_lead(acme, email="ann@icloud.com", firstName="Ann")
    first = sent(acme, lead, 60, CAMPAIGN, batch_id="b1", step_index=0)
    reply(acme, lead.phone, "older", minutes_ago=30)
    latest = reply(acme, lead.phone, "newer " + "x" * 300, minutes_ago=10)
    reply(acme, "ann@icloud.com", "hi", minutes_ago=20)

    body = api.get("/api/replies").json()
    assert body["total"] == 2 and body["totalPages"] == 1 and body["limit"] == 50
    assert [r["leadId"] for r in body["replies"]] == [lead.pk, other.pk]
    item = body["replies"][0]
    assert item["messageId"] == latest.pk
    assert item["message"] == latest.text  # the full text
    assert item["respondedAtUtc"] == iso(latest.received_at)
    assert [r["message"] for r in item["recentReplies"]] == ["newer " + "x" * 194, "older"]
    assert item["parentMessages"] == [
        {
            "messageId": first.pk,
            "message": "Step 60",
            "sentAtUtc": iso(first.sent_at),
            "batchId": "b1",
            "stepIndex": 0,
        }
    ]
    ann = body["replies"][1]
    assert (ann["recipientEmail"], ann["recipientPhone"], ann["name"]) == (
        "ann@icloud.com",
        None,
        "Ann",
    )


def test_recent_replies_and_parents_stop_at_ten(api, acme, lead):
    for i in range(12):
        sent(acme, lead, 100 + i)
        reply(acme, lead.phone, f"r{i}", minutes_ago=i)
    item = api.get("/api/replies").json()["replies"][0]
    assert len(item["recentReplies"]) == 10
    assert item["recentReplies"][0]["message"] == "r0"
    assert len(item["parentMessages"]) == 10
    assert item["parentMessages"][0]["message"] == "Step 100"


def test_it_paginates(api, acme):
    for i in range(5):
        phone = f"+1415555001{i}"
        make_lead(acme, phone=phone)
        reply(acme, phone, "hi", minutes_ago=i)
    body = api.get("/api/replies?page=2&limit=2").json()
    assert (body["total"], body["page"], body["limit"], body["totalPages"]) == (5, 2, 2, 3)
    assert [r["recipientPhone"] for r in body["replies"]] == ["+14155550012", "+14155550013"]
    assert api.get("/api/replies?page=9&limit=2").json()["replies"] == []


def test_it_filters_by_lead_campaign_and_recipient(api, acme, lead):
    other = make_lead(acme, phone="+14155550004", email="o@x.com")
    sent(acme, lead, 30, CAMPAIGN)
    reply(acme, lead.phone, "to campaign", minutes_ago=10)
    reply(acme, other.phone, "no campaign", minutes_ago=5)

    def lead_ids(query):
        response = api.get(f"/api/replies?{query}")
        assert response.status_code == 200, response.json()
        return [r["leadId"] for r in response.json()["replies"]]

    assert lead_ids(f"leadId={lead.pk}") == [lead.pk]
    assert lead_ids(f"campaignId={CAMPAIGN}") == [lead.pk]
    assert lead_ids("recipientPhone=(415) 555-0004") == [other.pk]
    assert lead_ids("recipientEmail=O@X.com") == [other.pk]
    assert lead_ids("leadId=") == [other.pk, lead.pk]


def test_the_errors_are_exact(api, acme, globex):
    foreign = make_lead(globex, phone="+14155550002")
    cases = [
        ("leadId=abc", 400, {"error": "Invalid leadId"}),
        ("campaignId=xyz", 400, {"error": "Invalid campaignId"}),
        (f"leadId={'0' * 24}", 404, {"error": "Lead not found or access denied"}),
        (f"leadId={foreign.pk}", 404, {"error": "Lead not found or access denied"}),
        (f"campaignId={'d' * 24}", 404, {"error": "Campaign not found"}),
    ]
    for query, status, body in cases:
        response = api.get(f"/api/replies?{query}")
        assert (response.status_code, response.json()) == (status, body), query
    assert api.get("/api/replies?page=0").json()["code"] == "VALIDATION_ERROR"
    assert api.get("/api/replies?limit=101").status_code == 400
    assert api.get("/api/replies?recipientPhone=12").json()["error"] == "Invalid recipientPhone"


def test_a_campaign_of_another_workspace_is_not_found(api, acme, globex):
    other = make_lead(globex, phone="+14155550002")
    sent(globex, other, 5, CAMPAIGN)
    response = api.get(f"/api/replies?campaignId={CAMPAIGN}")
    assert (response.status_code, response.json()) == (404, {"error": "Campaign not found"})


def test_replies_of_another_workspace_are_invisible(api, globex_api, acme, lead):
    reply(acme, lead.phone, "private")
    assert globex_api.get("/api/replies").json()["replies"] == []
    assert api.get("/api/replies").json()["total"] == 1


def test_it_needs_a_key(anon):
    response = anon.get("/api/replies")
    assert (response.status_code, response.json()) == (401, {"error": "Unauthorized"})


def test_the_query_count_does_not_grow_with_the_page(api, acme):
    def count_queries():
        with CaptureQueriesContext(connection) as queries:
            assert api.get("/api/replies?limit=100").status_code == 200
        return len(queries)

    count_queries()  # warm per-process caches (API key look-up, rate-limit bucket)

    for i in range(3):
        phone = f"+1415555002{i}"
        lead = make_lead(acme, phone=phone)
        sent(acme, lead, 50)
        reply(acme, phone, "a")
    small = count_queries()
    for i in range(3, 9):
        phone = f"+1415555002{i}"
        lead = make_lead(acme, phone=phone)
        sent(acme, lead, 50)
        reply(acme, phone, "a")
        reply(acme, phone, "b", minutes_ago=1)
    assert count_queries() == small
    assert InboundMessage.objects.count() == 15
