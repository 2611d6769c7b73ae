"""Deleting leads removes what the published lead-deletion truth table lists: the
lead, the messages sent to it (one-off and campaign), its replies, its
conversations and its campaign enrollments (so campaign stats and list counts
follow); other leads' data stays."""

import pytest

from campaigns.models import Enrollment
from leads.models import Lead, LeadList
from messaging.models import Conversation, DoNotContact, InboundMessage, Message

STEPS = [{"message": "Hi", "delay": 0, "delayUnit": "minutes"}]


@pytest.fixture
def world(api, acme, make_line):
    """Two leads in one list, each with a one-off message, a campaign enrollment,
    a reply and a conversation."""
    line = make_line(acme)
    target = LeadList.objects.create(workspace=acme, name="Target")
    leads = api.post(
        "/api/leads",
        {
            "leads": [
                {"phone": "+14155550132", "altEmail1": "gone@example.com"},
                {"phone": "+14155550134"},
            ],
            "listId": target.pk,
        },
        format="json",
    ).json()["leadIds"]
    campaign = api.post("/api/campaigns", {"name": "C", "steps": STEPS}, format="json").json()[
        "campaign"
    ]
    for lead_id in leads:
        lead = Lead.objects.get(pk=lead_id)
        sent = api.post(
            "/api/messages", {"leadId": lead_id, "message": "Hello"}, format="json"
        ).json()
        assert sent["success"] is True
        enrolled = api.post(
            f"/api/campaigns/{campaign['_id']}/leads", {"leadId": lead_id}, format="json"
        )
        assert enrolled.status_code == 201
        conversation = Conversation.objects.create(workspace=acme, address=lead.phone, line=line)
        InboundMessage.objects.create(
            workspace=acme, conversation=conversation, lead=lead, line=line,
            address=lead.phone, text="Thanks",
        )  # fmt: skip
    # A conversation with the first lead's alternate email, linked by address only.
    Conversation.objects.create(workspace=acme, address="gone@example.com", line=line)
    DoNotContact.objects.create(workspace=acme, value="+14155550132", kind="phone")
    return {"leads": leads, "campaign": campaign, "list": target}


def test_delete_leads_removes_their_messages_replies_and_conversations(api, acme, world):
    gone, kept = world["leads"]
    before_kept = (
        Message.objects.filter(lead_id=kept).count(),
        InboundMessage.objects.filter(lead_id=kept).count(),
        Enrollment.objects.filter(lead_id=kept).count(),
    )
    assert before_kept == (2, 1, 1)
    stats = api.get(f"/api/campaigns/{world['campaign']['_id']}").json()["stats"]
    assert stats["total"] == 2

    response = api.delete("/api/leads", {"ids": [gone]}, format="json")
    assert (response.status_code, response.json()) == (200, {"deletedCount": 1})

    assert not Lead.objects.filter(pk=gone).exists()
    assert not Message.objects.filter(lead_id=gone).exists()
    assert not Message.objects.filter(recipient_phone="+14155550132").exists()
    assert not InboundMessage.objects.filter(address="+14155550132").exists()
    assert not Conversation.objects.filter(
        address__in=["+14155550132", "gone@example.com"]
    ).exists()
    assert not Enrollment.objects.filter(lead_id=gone).exists()
    # The other lead keeps everything; the do-not-contact list is not about leads.
    assert (
        Message.objects.filter(lead_id=kept).count(),
        InboundMessage.objects.filter(lead_id=kept).count(),
        Enrollment.objects.filter(lead_id=kept).count(),
    ) == before_kept
    assert Conversation.objects.filter(address="+14155550134").exists()
    assert DoNotContact.objects.filter(value="+14155550132").exists()
    # Campaign stats and list counts follow.
    stats = api.get(f"/api/campaigns/{world['campaign']['_id']}").json()["stats"]
    assert stats["total"] == 1
    lists = {item["_id"]: item for item in api.get("/api/lists").json()["lists"]}
    assert lists[world["list"].pk]["leadCount"] == 1


def test_delete_a_list_with_its_leads_removes_their_data_too(api, acme, world):
    response = api.delete(
        "/api/lists", {"listId": world["list"].pk, "deleteLeads": True}, format="json"
    )
    assert (response.status_code, response.json()) == (200, {"success": True, "deletedLeads": 2})
    assert not Lead.objects.filter(pk__in=world["leads"]).exists()
    assert not Message.objects.exists()
    assert not InboundMessage.objects.exists()
    assert not Conversation.objects.exists()
    assert not Enrollment.objects.exists()
    stats = api.get(f"/api/campaigns/{world['campaign']['_id']}").json()["stats"]
    assert stats["total"] == 0
