"""GET/PATCH/PUT/DELETE on leads, bulk delete, search and pagination."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from leads.models import Lead, LeadIdentifier, LeadList
from leads.services import lead_import
from tests.leads.conftest import snapshot
from tuco.models import Workspace

NOT_FOUND = {"error": "Lead not found or access denied"}
# GET /api/leads?id= answers in the published words.
QUERY_NOT_FOUND = {"error": "Lead not found"}


@pytest.fixture
def lead(acme):
    result = lead_import(
        workspace=acme,
        rows=[{"firstName": "Ada", "lastName": "Lovelace", "phone": "+12025551234",
               "email": "ada@example.com", "companyName": "Analytical"}],
    )  # fmt: skip
    return Lead.objects.get(pk=result.lead_ids[0])


@pytest.fixture
def other(acme):
    result = lead_import(workspace=acme, rows=[{"phone": "+12025559999", "email": "o@x.io"}])
    return Lead.objects.get(pk=result.lead_ids[0])


def test_get_by_query_id_and_by_path(api, lead):
    by_query = api.get(f"/api/leads?id={lead.pk}")
    by_path = api.get(f"/api/leads/{lead.pk}")
    assert by_query.status_code == by_path.status_code == 200
    assert by_query.json() == by_path.json()
    body = by_path.json()["lead"]
    assert set(body) == {
        "_id", "firstName", "lastName", "email", "phone", "altPhone1", "altPhone2",
        "altPhone3", "altEmail1", "altEmail2", "altEmail3", "companyName", "jobTitle",
        "notes", "customFields", "listId", "workspaceId", "source", "contactOwnerEmail",
        "availabilityStatus", "availabilityCheckedAt", "availabilityAddress",
        "optedOut", "createdAt", "updatedAt", "listIds", "tags",
    }  # fmt: skip
    assert body["_id"] == lead.pk
    assert body["workspaceId"] == lead.workspace_id
    assert body["listId"] == body["listIds"][0]
    assert body["availabilityCheckedAt"] is None
    # Unset fields are null, not "".
    assert body["altPhone1"] is body["notes"] is body["availabilityStatus"] is None


@pytest.mark.parametrize("lead_id", ["0" * 24, "not-an-id", "'; drop table x;--"])
def test_unknown_lead_is_404(api, lead_id):
    assert api.get(f"/api/leads/{lead_id}").json() == NOT_FOUND


def test_by_query_id_an_unknown_lead_is_404_and_a_malformed_id_400(api):
    response = api.get("/api/leads", {"id": "0" * 24})
    assert (response.status_code, response.json()) == (404, QUERY_NOT_FOUND)
    for malformed in ["not-an-id", "'; drop table x;--", "0" * 23, "G" * 24]:
        response = api.get("/api/leads", {"id": malformed})
        assert (response.status_code, response.json()) == (400, {"error": "Invalid lead id"})


def test_another_workspace_cannot_touch_the_lead(globex_api, lead):
    before = snapshot()
    response = globex_api.get("/api/leads", {"id": lead.pk})
    assert (response.status_code, response.json()) == (404, QUERY_NOT_FOUND)
    for response in [
        globex_api.get(f"/api/leads/{lead.pk}"),
        globex_api.patch(f"/api/leads/{lead.pk}", {"firstName": "X"}, format="json"),
        globex_api.put(f"/api/leads/{lead.pk}", {"firstName": "X"}, format="json"),
        globex_api.delete(f"/api/leads/{lead.pk}"),
    ]:
        assert response.status_code == 404
        assert response.json() == NOT_FOUND
    response = globex_api.delete("/api/leads", {"ids": [lead.pk]}, format="json")
    assert response.json() == {"deletedCount": 0}
    assert globex_api.get("/api/leads").json()["pagination"]["totalCount"] == 0
    assert snapshot() == before


def test_patch_normalizes_and_keeps_identifiers_in_sync(api, lead):
    response = api.patch(
        f"/api/leads/{lead.pk}",
        {"phone": "(202) 555-0000", "altEmail1": " ADA2@Example.com", "email": ""},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()["lead"]
    assert (body["phone"], body["altEmail1"], body["email"]) == (
        "+12025550000",
        "ada2@example.com",
        None,
    )
    assert body["firstName"] == "Ada"
    assert body["updatedAt"] != body["createdAt"]
    assert sorted(LeadIdentifier.objects.filter(lead=lead).values_list("value", "field")) == [
        ("+12025550000", "phone"),
        ("ada2@example.com", "alt_email1"),
    ]


def test_put_behaves_like_patch(api, lead):
    response = api.put(f"/api/leads/{lead.pk}", {"jobTitle": "Countess"}, format="json")
    assert response.status_code == 200
    assert response.json()["lead"]["jobTitle"] == "Countess"
    assert response.json()["lead"]["phone"] == "+12025551234"


def test_patch_onto_another_leads_identifier_is_409(api, lead, other):
    before = snapshot()
    response = api.patch(f"/api/leads/{lead.pk}", {"altPhone1": "202-555-9999"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "CONFLICT"
    assert snapshot() == before


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"phone": "123"}, "phone: Invalid phone number"),
        ({"email": "nope"}, "email: Invalid email address"),
        ({"phone": "", "email": ""}, "phone: A lead needs at least one phone or email"),
        ({"firstName": 5}, "firstName: Must be a string."),
        ({"customFields": "x"}, "customFields:"),
        ({"optedOut": "perhaps"}, "optedOut:"),
    ],
)
def test_patch_rejects_bad_input(api, lead, body, error):
    before = snapshot()
    response = api.patch(f"/api/leads/{lead.pk}", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    assert snapshot() == before


def test_delete_one_and_many(api, acme, lead, other):
    response = api.delete(f"/api/leads/{lead.pk}")
    assert response.status_code == 200
    assert not Lead.objects.filter(pk=lead.pk).exists()
    assert not LeadIdentifier.objects.filter(lead_id=lead.pk).exists()
    assert api.get(f"/api/leads/{lead.pk}").status_code == 404
    response = api.delete("/api/leads", {"ids": [other.pk, lead.pk, "0" * 24]}, format="json")
    assert response.json() == {"deletedCount": 1}
    assert Lead.objects.filter(workspace=acme).count() == 0


@pytest.mark.parametrize("body", [{}, {"ids": []}, {"ids": None}, {"ids": "x"}, []])
def test_bulk_delete_needs_ids(api, lead, body):
    response = api.delete("/api/leads", body, format="json")
    assert (response.status_code, response.json()) == (400, {"error": "No ids provided"})
    assert Lead.objects.filter(pk=lead.pk).exists()


@pytest.mark.parametrize("bad", ["junk", 7, None, "0" * 25])
def test_bulk_delete_with_a_malformed_id_deletes_nothing(api, lead, bad):
    response = api.delete("/api/leads", {"ids": [lead.pk, bad]}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid lead id in ids array"}
    assert Lead.objects.filter(pk=lead.pk).exists()


def test_writes_are_refused_when_past_due_and_change_nothing(api, acme, lead):
    Workspace.objects.filter(pk=acme.pk).update(billing_status="past_due")
    before = snapshot()
    for response in [
        api.patch(f"/api/leads/{lead.pk}", {"firstName": "X"}, format="json"),
        api.put(f"/api/leads/{lead.pk}", {"firstName": "X"}, format="json"),
        api.delete(f"/api/leads/{lead.pk}"),
        api.delete("/api/leads", {"ids": [lead.pk]}, format="json"),
        api.post("/api/lists", {"name": "New"}, format="json"),
    ]:
        assert response.status_code == 402
        assert response.json() == {"error": "READ_ONLY", "code": "READ_ONLY", "reason": "past_due"}
    assert snapshot() == before
    assert api.get(f"/api/leads/{lead.pk}").status_code == 200


class TestSearch:
    @pytest.fixture
    def many(self, acme):
        rows = [
            {"firstName": f"Person{n}", "phone": f"+1202555{n:04d}", "email": f"p{n}@ex.com"}
            for n in range(120)
        ]
        rows.append({"firstName": "Grace", "lastName": "Hopper", "companyName": "Navy Labs",
                     "phone": "+14155550123"})  # fmt: skip
        lead_import(workspace=acme, rows=rows)

    def test_first_page_and_pagination(self, api, many):
        body = api.get("/api/leads", {"page": 2, "limit": 50}).json()
        assert body["pagination"] == {"page": 2, "limit": 50, "totalCount": 121, "totalPages": 3}
        assert len(body["leads"]) == 50
        assert body["lists"][0]["leadCount"] == 121
        first = api.get("/api/leads").json()
        assert first["pagination"]["limit"] == 50
        ids = {lead["_id"] for lead in first["leads"]} | {lead["_id"] for lead in body["leads"]}
        assert len(ids) == 100
        last = api.get("/api/leads", {"page": 9}).json()
        assert last["leads"] == []

    @pytest.mark.parametrize(
        ("search", "count"),
        [("grace", 1), ("HOPPER", 1), ("navy", 1), ("grace hopper", 1), ("p7@ex", 1),
         ("415-555", 1), ("(202) 555-01", 20), ("(202) 555-0119", 1),
         ("person1", 31), ("nobody", 0)],
    )  # fmt: skip
    def test_search(self, api, many, search, count):
        body = api.get("/api/leads", {"search": search, "limit": 200}).json()
        assert body["pagination"]["totalCount"] == count
        assert len(body["leads"]) == count

    def test_a_number_also_matches_text_fields_and_alternate_phones(self, api, acme):
        lead_import(
            workspace=acme,
            rows=[
                {"companyName": "Studio 909", "email": "hello@studio.io"},
                {"email": "x@y.io", "altPhone3": "+14155550909"},
                {"phone": "+14155550100"},
            ],
        )
        body = api.get("/api/leads", {"search": "909"}).json()
        assert body["pagination"]["totalCount"] == 2

    def test_filter_by_list(self, api, acme, many):
        vip = LeadList.objects.create(workspace=acme, name="VIP")
        lead_import(workspace=acme, rows=[{"phone": "+14155550123"}], lead_list=vip)
        body = api.get("/api/leads", {"listId": vip.pk}).json()
        assert [lead["lastName"] for lead in body["leads"]] == ["Hopper"]
        assert set(body["leads"][0]["listIds"]) == {vip.pk, body["lists"][0]["_id"]}
        for unknown in ["0" * 24, "junk"]:
            response = api.get("/api/leads", {"listId": unknown})
            assert response.status_code == 404
            assert response.json() == {"error": "List not found"}

    @pytest.mark.parametrize(
        "params", [{"page": 0}, {"page": "x"}, {"limit": 0}, {"limit": 201}, {"limit": "a"}]
    )
    def test_bad_paging_is_400(self, api, params):
        response = api.get("/api/leads", params)
        assert response.status_code == 400
        assert response.json()["code"] == "VALIDATION_ERROR"

    def test_the_page_costs_a_fixed_number_of_queries(self, api, acme, many):
        for n in range(5):
            LeadList.objects.create(workspace=acme, name=f"L{n}")
        api.get("/api/leads")  # warm up auth caches
        with CaptureQueriesContext(connection) as small:
            api.get("/api/leads", {"limit": 5})
        with CaptureQueriesContext(connection) as large:
            api.get("/api/leads", {"limit": 100})
        assert len(large) == len(small)


def test_patch_with_a_bad_default_country_code_is_400(api, lead):
    before = snapshot()
    response = api.patch(
        f"/api/leads/{lead.pk}",
        {"phone": "2025550000", "defaultCountryCode": "+999"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("defaultCountryCode:")
    assert snapshot() == before


def test_patch_does_not_undo_a_change_committed_since_the_lead_was_read(acme, lead):
    from leads.services import lead_update

    stale = Lead.objects.get(pk=lead.pk)
    Lead.objects.filter(pk=lead.pk).update(opted_out=True, availability_status="available")
    updated = lead_update(workspace=acme, lead=stale, first_name="Augusta")
    fresh = Lead.objects.get(pk=lead.pk)
    assert (fresh.first_name, fresh.opted_out, fresh.availability_status) == (
        "Augusta",
        True,
        "available",
    )
    assert updated.opted_out is True


def test_changing_an_identifier_clears_the_old_availability_answer(api, lead):
    Lead.objects.filter(pk=lead.pk).update(
        availability_status="available", availability_address="+12025551234"
    )
    response = api.patch(f"/api/leads/{lead.pk}", {"phone": "+12025551236"}, format="json")
    assert response.status_code == 200
    assert response.json()["lead"]["availabilityStatus"] in ("", None)
    lead.refresh_from_db()
    assert (lead.availability_status, lead.availability_address) == ("", "")
