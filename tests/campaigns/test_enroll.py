"""POST /api/campaigns/{id}/leads (and /enroll)."""

import threading

import pytest
from django.conf import settings
from django.db import connection

from campaigns.models import Enrollment
from leads.models import Lead, LeadIdentifier
from messaging.models import DoNotContact, Message
from tests.conftest import api_client

STEPS = [
    {"message": "One", "delay": 0, "delayUnit": "minutes"},
    {"message": "Two", "delay": 1, "delayUnit": "days"},
    {"message": "Three", "delay": 2, "delayUnit": "hours"},
]

NO_CRM_IDS = {"ghlContactId": None, "ghlLocationId": None, "hsPortalId": None, "hsContactId": None}


@pytest.fixture
def campaign(api, make_line):
    make_line()
    response = api.post("/api/campaigns", {"name": "C", "steps": STEPS}, format="json")
    return response.json()["campaign"]


def make_lead(workspace, phone="+12025550100", **fields):
    lead = Lead.objects.create(workspace=workspace, phone=phone, **fields)
    LeadIdentifier.objects.create(workspace=workspace, value=phone, lead=lead, field="phone")
    return lead


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["leads", "enroll"])
def test_it_enrolls_an_existing_lead_once(api, acme, campaign, path):
    lead = make_lead(acme)
    url = f"/api/campaigns/{campaign['_id']}/{path}"
    response = api.post(url, {"leadId": lead.pk}, format="json")
    assert response.status_code == 201
    assert response.json() == {
        "success": True,
        "leadId": lead.pk,
        "campaignId": campaign["_id"],
        "messageCount": 3,
        "message": "Lead added to campaign and sequence started",
        "alreadyInCampaign": False,
        **NO_CRM_IDS,
    }
    messages = list(Message.objects.filter(campaign_id=campaign["_id"]).order_by("step_index"))
    assert [m.step_index for m in messages] == [0, 1, 2]
    assert [m.body for m in messages] == ["One", "Two", "Three"]
    assert len({m.batch_id for m in messages}) == 1 and messages[0].batch_id
    assert all(m.stop_on_reply for m in messages)
    assert all(m.status == "scheduled" for m in messages)
    assert len({m.line_id for m in messages}) == 1 and messages[0].line_id

    again = api.post(url, {"leadId": lead.pk}, format="json")
    assert again.status_code == 200
    assert again.json() == {
        "success": True,
        "leadId": lead.pk,
        "campaignId": campaign["_id"],
        "messageCount": 0,
        "alreadyInCampaign": True,
        "existingLeadIds": [lead.pk],
        "message": "Lead already in campaign (re-entry not allowed).",
        **NO_CRM_IDS,
    }
    assert Message.objects.filter(campaign_id=campaign["_id"]).count() == 3


@pytest.mark.django_db
def test_it_reuses_a_matching_lead_unchanged(api, acme, campaign):
    lead = make_lead(acme, first_name="Original")
    response = api.post(
        f"/api/campaigns/{campaign['_id']}/leads",
        {"lead": {"firstName": "Changed", "phone": "(202) 555-0100"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["leadId"] == lead.pk
    lead.refresh_from_db()
    assert lead.first_name == "Original"
    assert Lead.objects.count() == 1


@pytest.mark.django_db
def test_it_creates_a_new_lead_from_the_lead_object(api, acme, campaign):
    response = api.post(
        f"/api/campaigns/{campaign['_id']}/leads",
        {"lead": {"firstName": "Jane", "phone": "+12025550000"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    lead = Lead.objects.get(pk=response.json()["leadId"])
    assert lead.first_name == "Jane"
    assert Enrollment.objects.filter(lead=lead).count() == 1


@pytest.mark.django_db
def test_it_answers_400_and_404_and_saves_nothing(api, globex, campaign):
    url = f"/api/campaigns/{campaign['_id']}/leads"
    response = api.post(url, {}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "Either leadId or lead data is required"}
    response = api.post(url, {"leadId": "0" * 24}, format="json")
    assert response.status_code == 404
    assert response.json()["error"] == "Lead not found"
    foreign = make_lead(globex)
    response = api.post(url, {"leadId": foreign.pk}, format="json")
    assert response.status_code == 404
    assert response.json()["error"] == "Lead not found"
    response = api.post(url, {"lead": {"phone": "not a phone"}}, format="json")
    assert response.status_code == 400
    response = api.post("/api/campaigns/nope/leads", {"leadId": foreign.pk}, format="json")
    assert response.status_code == 404
    assert response.json()["error"] == "Campaign not found"
    assert not Enrollment.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_an_opted_out_or_do_not_contact_lead_gets_nothing_sent(api, acme, campaign):
    opted = make_lead(acme, opted_out=True)
    listed = make_lead(acme, phone="+12025550200")
    DoNotContact.objects.create(workspace=acme, value=listed.phone, kind="phone")
    for lead, reason in (
        (opted, "Lead opted out"),
        (listed, "Recipient is on the do-not-contact list"),
    ):
        response = api.post(
            f"/api/campaigns/{campaign['_id']}/leads", {"leadId": lead.pk}, format="json"
        )
        assert response.status_code == 201
        assert response.json() == {
            "success": True,
            "leadId": lead.pk,
            "campaignId": campaign["_id"],
            "messageCount": 3,
            "message": "Lead added to campaign and sequence started",
            "alreadyInCampaign": False,
            **NO_CRM_IDS,
            "cancelled": True,
            "reason": reason,
        }
    assert set(Message.objects.values_list("status", flat=True)) == {"cancelled"}
    assert set(Enrollment.objects.values_list("state", flat=True)) == {"stopped"}


@pytest.mark.django_db(transaction=True)
def test_enrolling_the_same_lead_twice_at_once_enrolls_it_once(acme, campaign):
    if not settings.IS_POSTGRES:
        pytest.skip("needs Postgres for real concurrent transactions")
    lead = make_lead(acme)
    barrier = threading.Barrier(4)
    codes = []

    def enroll():
        try:
            client = api_client(acme.raw_key)
            barrier.wait()
            response = client.post(
                f"/api/campaigns/{campaign['_id']}/leads", {"leadId": lead.pk}, format="json"
            )
            codes.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=enroll) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200, 200, 200, 201]
    assert Enrollment.objects.filter(lead=lead).count() == 1
    assert Message.objects.filter(lead=lead).count() == 3
