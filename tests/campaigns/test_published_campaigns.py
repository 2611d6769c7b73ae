"""POST /api/campaigns and /api/campaigns/{id}/leads (and /enroll) against the
published examples (endpoint/campaign-add-lead.mdx, openapi.json, the lead
uniqueness and duplicate-lead truth tables)."""

import pytest

from campaigns.models import Enrollment
from leads.models import Lead, LeadList
from leads.services import lead_import
from messaging.models import Message

STEPS = [
    {"message": "Hi {firstName}", "delay": 0, "delayUnit": "minutes"},
    {"message": "Following up", "delay": 2, "delayUnit": "days"},
]

# openapi.json, POST /api/campaigns/{id}/leads, example "newLead"
NEW_LEAD = {
    "firstName": "Jane",
    "lastName": "Smith",
    "email": "jane@example.com",
    "phone": "+12025551234",
    "companyName": "Acme Inc",
}


@pytest.fixture
def campaign(api, make_line):
    make_line()
    response = api.post("/api/campaigns", {"name": "Spring", "steps": STEPS}, format="json")
    assert response.status_code == 201
    return response.json()["campaign"]


def test_create_campaign_answers_campaign_and_message(api, make_line):
    make_line()
    response = api.post("/api/campaigns", {"name": "Spring", "steps": STEPS}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"campaign", "message"}
    assert body["message"] == "Campaign created successfully"
    assert (body["campaign"]["name"], body["campaign"]["status"]) == ("Spring", "draft")
    assert api.get(f"/api/campaigns/{body['campaign']['_id']}").json() == body["campaign"]


@pytest.mark.parametrize("path", ["leads", "enroll"])
def test_add_an_existing_lead_then_again(api, acme, campaign, path):
    [lead_id] = lead_import(workspace=acme, rows=[{"phone": "+14155551234"}]).lead_ids
    url = f"/api/campaigns/{campaign['_id']}/{path}"
    response = api.post(url, {"leadId": lead_id}, format="json")
    assert response.status_code == 201
    assert response.json() == {
        "success": True,
        "leadId": lead_id,
        "campaignId": campaign["_id"],
        "messageCount": 2,
        "message": "Lead added to campaign and sequence started",
        "alreadyInCampaign": False,
        "ghlContactId": None,
        "ghlLocationId": None,
        "hsPortalId": None,
        "hsContactId": None,
    }
    again = api.post(url, {"leadId": lead_id}, format="json")
    assert again.status_code == 200
    assert again.json() == {
        "success": True,
        "leadId": lead_id,
        "campaignId": campaign["_id"],
        "messageCount": 0,
        "message": "Lead already in campaign (re-entry not allowed).",
        "alreadyInCampaign": True,
        "existingLeadIds": [lead_id],
        "ghlContactId": None,
        "ghlLocationId": None,
        "hsPortalId": None,
        "hsContactId": None,
    }
    assert Message.objects.filter(campaign_id=campaign["_id"]).count() == 2


def test_create_and_add_a_new_lead(api, acme, campaign):
    response = api.post(
        f"/api/campaigns/{campaign['_id']}/leads", {"lead": NEW_LEAD}, format="json"
    )
    assert response.status_code == 201
    lead = Lead.objects.get(pk=response.json()["leadId"])
    assert (lead.first_name, lead.email, lead.phone, lead.company_name) == (
        "Jane",
        "jane@example.com",
        "+12025551234",
        "Acme Inc",
    )
    assert response.json()["messageCount"] == 2


def test_the_crm_ids_of_the_request_are_echoed(api, campaign):
    """The newLeadWithGhl example: the lead's ids come back in the answer."""
    lead = {**NEW_LEAD, "ghlContactId": "aMUQn0u0Z7cw0NQ7tJ5R", "ghlLocationId": "eL7DD22B"}
    response = api.post(
        f"/api/campaigns/{campaign['_id']}/leads",
        {"lead": lead, "hsPortalId": 991001},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["ghlContactId"], body["ghlLocationId"]) == ("aMUQn0u0Z7cw0NQ7tJ5R", "eL7DD22B")
    assert (body["hsPortalId"], body["hsContactId"]) == ("991001", None)


def test_a_matching_lead_is_reused_as_is(api, acme, campaign):
    """campaign-add-lead.mdx, "Deduplication": a match by a differently written phone
    or email reuses the lead without changing it."""
    [lead_id] = lead_import(
        workspace=acme, rows=[{"firstName": "Old", "phone": "+12025551234"}]
    ).lead_ids
    url = f"/api/campaigns/{campaign['_id']}/leads"
    response = api.post(
        url, {"lead": {"firstName": "New", "phone": "(202) 555-1234"}}, format="json"
    )
    assert (response.status_code, response.json()["leadId"]) == (201, lead_id)
    assert Lead.objects.get(pk=lead_id).first_name == "Old"
    response = api.post(
        url, {"lead": {"firstName": "New", "email": "X@Example.com"}}, format="json"
    )
    assert response.status_code == 201  # a new lead: nobody had that email
    response = api.post(
        url, {"lead": {"firstName": "Again", "email": "x@example.com"}}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["alreadyInCampaign"] is True
    assert response.json()["existingLeadIds"] == [response.json()["leadId"]]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "Either leadId or lead data is required"),
        ({"leadId": ""}, "Either leadId or lead data is required"),
        ({"leadId": "   ", "lead": None}, "Either leadId or lead data is required"),
        ({"lead": {"lastName": "Smith", "phone": "+12025551234"}}, "firstName is required"),
        ({"lead": {"firstName": " ", "phone": "+12025551234"}}, "firstName is required"),
        ({"lead": {"firstName": "Jane"}}, "Either email or phone is required"),
        (
            {"lead": {"firstName": "Jane", "altPhone1": "+12025551234"}},
            "Either email or phone is required",
        ),
    ],
)
def test_the_published_400s(api, campaign, body, error):
    response = api.post(f"/api/campaigns/{campaign['_id']}/leads", body, format="json")
    assert (response.status_code, response.json()) == (400, {"error": error})
    assert not Lead.objects.exists()
    assert not Enrollment.objects.exists()


def test_an_invalid_lead_field_is_named_on_lead(api, campaign):
    response = api.post(
        f"/api/campaigns/{campaign['_id']}/leads",
        {"lead": {"firstName": "Jane", "phone": "12345"}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "lead.phone: Invalid phone number"
    assert "row" not in response.json()
    assert not Lead.objects.exists()


def test_the_published_404s(api, acme, globex, campaign):
    response = api.post(
        f"/api/campaigns/{campaign['_id']}/leads",
        {"leadId": "69b2c41d352a78479d2c623b"},
        format="json",
    )
    assert response.status_code == 404
    assert response.json()["error"] == "Lead not found"
    response = api.post(
        "/api/campaigns/69ab444ac1feb77d7f46462f/leads", {"lead": NEW_LEAD}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error"] == "Campaign not found"
    assert not Lead.objects.exists()


def test_a_new_lead_joins_the_campaigns_list(api, acme, make_line):
    make_line()
    target = LeadList.objects.create(workspace=acme, name="Spring list")
    created = api.post(
        "/api/campaigns", {"name": "Listed", "steps": STEPS, "listId": target.pk}, format="json"
    ).json()["campaign"]
    response = api.post(f"/api/campaigns/{created['_id']}/leads", {"lead": NEW_LEAD}, format="json")
    assert response.status_code == 201
    assert list(target.leads.values_list("pk", flat=True)) == [response.json()["leadId"]]


def test_a_new_lead_keeps_its_contact_owner(api, acme, campaign, bob):
    url = f"/api/campaigns/{campaign['_id']}/leads"
    response = api.post(
        url, {"lead": {**NEW_LEAD, "contactOwnerEmail": "BOB@acme.test"}}, format="json"
    )
    assert response.status_code == 201
    assert Lead.objects.get(pk=response.json()["leadId"]).contact_owner_email == "bob@acme.test"
    # Not a member: the workspace's first member owns it.
    response = api.post(
        url,
        {"lead": {"firstName": "Ann", "phone": "+12025550188", "contactOwnerEmail": "x@y.z"}},
        format="json",
    )
    assert Lead.objects.get(pk=response.json()["leadId"]).contact_owner_email == "alice@acme.test"
