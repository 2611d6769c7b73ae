"""/api/leads and /api/lists against the published pages' own examples
(api-reference/endpoint/create.mdx, get.mdx, delete.mdx, openapi.json, the lead
truth tables)."""

import pytest

from leads.models import Lead, LeadList
from leads.services import lead_import

# create.mdx, "Request Body"
CREATE_EXAMPLE = {
    "leads": [
        {
            "firstName": "John",
            "lastName": "Doe",
            "email": "john@example.com",
            "phone": "+12025551234",
            "companyName": "Acme Corp",
            "jobTitle": "CEO",
            "notes": "Warm intro from Sarah",
            "contactOwnerEmail": "rep@yourcompany.com",
            "customFields": {"industry": "Technology", "segment": "Mid-market"},
        }
    ],
    "source": "api",
    "defaultCountryCode": "+1",
}

# openapi.json, POST /api/leads, example "bulkWithList" (listId replaced by a real one)
BULK_WITH_LIST = {
    "leads": [
        {
            "firstName": "Jane",
            "lastName": "Smith",
            "email": "jane@example.com",
            "phone": "+12025559999",
            "companyName": "Acme",
            "contactOwnerEmail": "jane-rep@yourcompany.com",
        },
        {
            "firstName": "Bob",
            "lastName": "Lee",
            "email": "bob@example.com",
            "phone": "+12025558888",
        },
    ],
    "source": "gohighlevel",
    "defaultCountryCode": "+1",
    "ghlLocationId": "eL7DD22BdZ0rismu7qCA",
    "contactOwnerEmail": "default-rep@yourcompany.com",
}

LIST_NOT_FOUND = (
    "List not found. The specified listId does not exist or is invalid. "
    "Omit listId to use the Quick Sends list."
)


@pytest.fixture
def reps(acme, django_user_model):
    """Two more members of Acme, whose emails the examples name as contact owners."""
    from tuco.models import Membership

    for email in ("jane-rep@yourcompany.com", "default-rep@yourcompany.com"):
        user = django_user_model.objects.create_user(email, email, "rep-password")
        Membership.objects.create(workspace=acme, user=user)


def test_the_create_example_is_201_with_the_published_fields(api, acme):
    response = api.post("/api/leads", CREATE_EXAMPLE, format="json")
    assert response.status_code == 201
    body = response.json()
    quick_sends = LeadList.objects.get(workspace=acme, name="Quick Sends")
    [lead_id] = body["leadIds"]
    assert body == {
        "message": "Leads saved successfully",
        "savedCount": 1,
        "duplicateCount": 0,
        "linkedCount": 0,
        "totalProcessed": 1,
        "listId": quick_sends.pk,
        "leadId": lead_id,
        "leadIds": [lead_id],
        "leadListIds": [quick_sends.pk],
        "ghlContactId": None,
        "ghlLocationId": None,
        "hsPortalId": None,
        "hsContactId": None,
    }
    lead = api.get("/api/leads", {"id": lead_id}).json()["lead"]
    # rep@yourcompany.com is no member of the workspace: the first member owns the lead.
    assert lead["contactOwnerEmail"] == "alice@acme.test"
    assert (lead["firstName"], lead["jobTitle"], lead["notes"]) == (
        "John",
        "CEO",
        "Warm intro from Sarah",
    )
    assert lead["customFields"] == {"industry": "Technology", "segment": "Mid-market"}


def test_the_crm_ids_of_the_request_are_echoed(api):
    """The first row's contact ids and the body's location / portal ids come back; a
    blank one is null."""
    rows = [
        {"firstName": "Mia", "phone": "+12025550121", "ghlContactId": "ghl_contact_001"},
        {"firstName": "Liam", "phone": "+12025550122", "ghlContactId": "ghl_contact_002"},
    ]
    body = {"leads": rows, "ghlLocationId": "eL7DD22B", "hsContactId": "  "}
    response = api.post("/api/leads", body, format="json")
    assert response.status_code == 201
    answer = response.json()
    assert (answer["ghlContactId"], answer["ghlLocationId"]) == ("ghl_contact_001", "eL7DD22B")
    assert (answer["hsPortalId"], answer["hsContactId"]) == (None, None)
    again = api.post("/api/leads", body, format="json")
    assert again.status_code == 200
    assert again.json()["ghlContactId"] == "ghl_contact_001"


def test_body_is_an_alias_of_leads(api, acme):
    request = {"body": CREATE_EXAMPLE["leads"], "source": "api"}
    response = api.post("/api/leads", request, format="json")
    assert response.status_code == 201
    assert Lead.objects.get(pk=response.json()["leadId"]).email == "john@example.com"


def test_without_leads_or_body_it_is_400(api):
    response = api.post("/api/leads", {"source": "api"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "leads: This field is required."


def test_the_bulk_example_keeps_each_contact_owner(api, acme, reps):
    target = LeadList.objects.create(workspace=acme, name="Prospects")
    response = api.post("/api/leads", {**BULK_WITH_LIST, "listId": target.pk}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["savedCount"], body["listId"], body["leadListIds"]) == (2, target.pk, [target.pk])
    owners = [
        api.get("/api/leads", {"id": lead_id}).json()["lead"]["contactOwnerEmail"]
        for lead_id in body["leadIds"]
    ]
    # The row's own owner, then the request's for the row that names none.
    assert owners == ["jane-rep@yourcompany.com", "default-rep@yourcompany.com"]
    assert Lead.objects.get(pk=body["leadIds"][1]).source == "gohighlevel"


def test_an_unknown_list_is_the_published_404(api):
    response = api.post(
        "/api/leads", {**CREATE_EXAMPLE, "listId": "507f1f77bcf86cd799439011"}, format="json"
    )
    assert response.status_code == 404
    assert response.json() == {"error": LIST_NOT_FOUND}
    assert not Lead.objects.exists()


def test_all_duplicates_is_200_with_the_existing_leads(api, acme):
    """openapi.json, POST /api/leads, response 200 example."""
    row = {
        "firstName": "BG",
        "lastName": "Real",
        "email": "goforbg@icloud.com",
        "phone": "+919042956129",
    }
    first = api.post("/api/leads", {"leads": [row]}, format="json").json()
    response = api.post("/api/leads", {"leads": [row]}, format="json")
    assert response.status_code == 200
    body = response.json()
    existing = first["leadId"]
    assert body["message"] == "Lead was a duplicate; existing lead ID returned."
    assert body["duplicateOnly"] is True
    assert (body["duplicateCount"], body["totalProcessed"], body["savedCount"]) == (1, 1, 0)
    assert body["leadId"] == existing
    assert body["existingLeadIds"] == body["leadIds"] == [existing]
    [duplicate] = body["duplicates"]
    assert duplicate["input"] == row
    assert {key: duplicate["existingLead"][key] for key in ("_id", *row)} == {
        "_id": existing,
        **row,
    }


def test_some_duplicates_are_listed_next_to_the_new_leads(api, acme):
    api.post("/api/leads", {"leads": [{"phone": "+12025550001"}]}, format="json")
    rows = [{"phone": "+12025550002"}, {"phone": "(202) 555-0001", "firstName": "Again"}]
    response = api.post("/api/leads", {"leads": rows}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["savedCount"], body["duplicateCount"]) == (1, 1)
    [duplicate] = body["duplicates"]
    assert duplicate["input"] == rows[1]
    assert duplicate["existingLead"]["phone"] == "+12025550001"
    assert duplicate["existingLead"]["firstName"] is None  # not overwritten


def test_a_new_leads_response_has_no_duplicates_field(api):
    body = api.post("/api/leads", {"leads": [{"phone": "+12025550002"}]}, format="json").json()
    assert "duplicates" not in body


def test_get_the_list_example_shape(api, acme):
    """get.mdx and openapi.json: leads with listId and workspaceId, null for what is
    not set, lists with workspaceId and description, pagination."""
    created = api.post(
        "/api/leads",
        {"leads": [{"firstName": "Tuco test", "email": "goforbg@icloud.com"}], "source": "api"},
        format="json",
    ).json()
    body = api.get("/api/leads", {"search": "goforbg", "page": 1, "limit": 50}).json()
    [lead] = body["leads"]
    quick_sends = LeadList.objects.get(workspace=acme, name="Quick Sends")
    assert {key: lead[key] for key in ("_id", "firstName", "lastName", "email", "phone")} == {
        "_id": created["leadId"],
        "firstName": "Tuco test",
        "lastName": None,
        "email": "goforbg@icloud.com",
        "phone": None,
    }
    assert (lead["listId"], lead["workspaceId"], lead["source"]) == (
        quick_sends.pk,
        acme.pk,
        "api",
    )
    assert lead["createdAt"].endswith("Z") and lead["updatedAt"].endswith("Z")
    [listed] = body["lists"]
    assert {key: listed[key] for key in ("_id", "name", "description", "workspaceId")} == {
        "_id": quick_sends.pk,
        "name": "Quick Sends",
        "description": "Quick send messages",
        "workspaceId": acme.pk,
    }
    assert listed["leadCount"] == 1
    assert body["pagination"] == {"page": 1, "limit": 50, "totalCount": 1, "totalPages": 1}


def test_get_single_lead_and_its_errors(api, acme):
    lead_id = api.post("/api/leads", {"leads": [{"phone": "+12025550003"}]}, format="json").json()[
        "leadId"
    ]
    assert api.get("/api/leads", {"id": lead_id}).json()["lead"]["_id"] == lead_id
    response = api.get("/api/leads", {"id": "69a2e8e6c580cf046a551fde"})
    assert (response.status_code, response.json()) == (404, {"error": "Lead not found"})
    response = api.get("/api/leads", {"id": "not-a-lead-id"})
    assert (response.status_code, response.json()) == (400, {"error": "Invalid lead id"})


def test_delete_the_example_ids(api, acme):
    """delete.mdx: ids of the workspace are deleted, others are skipped."""
    ids = lead_import(
        workspace=acme, rows=[{"phone": "+12025550011"}, {"phone": "+12025550012"}]
    ).lead_ids
    response = api.delete("/api/leads", {"ids": [*ids, "674a1b2c3d4e5f6789012346"]}, format="json")
    assert (response.status_code, response.json()) == (200, {"deletedCount": 2})
    assert not Lead.objects.filter(pk__in=ids).exists()


def test_delete_errors_are_the_published_ones(api, acme):
    ids = lead_import(workspace=acme, rows=[{"phone": "+12025550013"}]).lead_ids
    response = api.delete("/api/leads", {"ids": []}, format="json")
    assert (response.status_code, response.json()) == (400, {"error": "No ids provided"})
    response = api.delete("/api/leads", {"ids": [ids[0], "nope"]}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid lead id in ids array"}
    assert Lead.objects.filter(pk=ids[0]).exists()


class TestLists:
    def test_create_list_and_read_it_back(self, api, acme):
        response = api.post(
            "/api/lists", {"name": "Prospects – October", "description": "Q4"}, format="json"
        )
        assert response.status_code == 201
        created = response.json()["list"]
        assert (created["name"], created["description"], created["workspaceId"]) == (
            "Prospects – October",
            "Q4",
            acme.pk,
        )
        assert created["leadCount"] == 0
        lists = api.get("/api/lists").json()["lists"]
        assert [item["_id"] for item in lists] == [created["_id"]]

    def test_delete_lists_with_list_id_keeps_the_leads(self, api, acme):
        target = LeadList.objects.create(workspace=acme, name="Target")
        ids = lead_import(
            workspace=acme, rows=[{"phone": "+12025550021"}], lead_list=target
        ).lead_ids
        response = api.delete("/api/lists", {"listId": target.pk}, format="json")
        assert (response.status_code, response.json()) == (
            200,
            {"success": True, "deletedLeads": 0},
        )
        assert not LeadList.objects.filter(pk=target.pk).exists()
        assert Lead.objects.filter(pk__in=ids).exists()

    def test_delete_lists_with_delete_leads_removes_them(self, api, acme):
        target = LeadList.objects.create(workspace=acme, name="Target")
        kept = lead_import(workspace=acme, rows=[{"phone": "+12025550031"}]).lead_ids
        ids = lead_import(
            workspace=acme,
            rows=[{"phone": "+12025550032"}, {"phone": "+12025550033"}],
            lead_list=target,
        ).lead_ids
        response = api.delete(
            "/api/lists", {"listId": target.pk, "deleteLeads": True}, format="json"
        )
        assert (response.status_code, response.json()) == (
            200,
            {"success": True, "deletedLeads": 2},
        )
        assert not Lead.objects.filter(pk__in=ids).exists()
        assert Lead.objects.filter(pk__in=kept).exists()

    def test_delete_lists_needs_a_known_list_id(self, api, acme, globex):
        theirs = LeadList.objects.create(workspace=globex, name="Theirs")
        response = api.delete("/api/lists", {}, format="json")
        assert response.status_code == 400
        assert response.json()["error"] == "listId: This field is required."
        for list_id in [theirs.pk, "0" * 24, "junk"]:
            response = api.delete("/api/lists", {"listId": list_id}, format="json")
            assert (response.status_code, response.json()) == (404, {"error": "List not found"})
        assert LeadList.objects.filter(pk=theirs.pk).exists()
