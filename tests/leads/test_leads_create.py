"""POST /api/leads: the upload endpoint."""

from unittest import mock

import pytest
from django.test import override_settings

from leads.models import Lead, LeadIdentifier, LeadList, ListMembership
from leads.signals import leads_created
from tests.leads.conftest import snapshot
from tuco.models import IdempotencyRecord, Workspace

JOHN = {
    "firstName": "John",
    "lastName": "Doe",
    "email": " John.Doe@Example.COM ",
    "phone": "(202) 555-1234",
    "companyName": "Acme Corp",
    "jobTitle": "CEO",
    "notes": "Warm intro from Sarah",
    "customFields": {"industry": "Technology", "segment": "Mid-market"},
}


def test_it_creates_a_lead_with_normalized_identifiers(api, acme, post_leads):
    lead_list = LeadList.objects.create(workspace=acme, name="Prospects")
    response = post_leads([JOHN], listId=lead_list.pk, source="api", defaultCountryCode="+1")
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "message": "Leads saved successfully",
        "savedCount": 1,
        "duplicateCount": 0,
        "linkedCount": 0,
        "totalProcessed": 1,
        "listId": lead_list.pk,
        "leadId": body["leadIds"][0],
        "leadIds": [body["leadIds"][0]],
        "leadListIds": [lead_list.pk],
        "ghlContactId": None,
        "ghlLocationId": None,
        "hsPortalId": None,
        "hsContactId": None,
    }
    lead = Lead.objects.get(pk=body["leadIds"][0])
    assert lead.workspace == acme
    assert (lead.phone, lead.email) == ("+12025551234", "john.doe@example.com")
    assert lead.custom_fields == {"industry": "Technology", "segment": "Mid-market"}
    assert lead.source == "api"
    assert list(lead.lists.all()) == [lead_list]
    assert sorted(LeadIdentifier.objects.filter(lead=lead).values_list("value", "field")) == [
        ("+12025551234", "phone"),
        ("john.doe@example.com", "email"),
    ]

    fetched = api.get(f"/api/leads/{lead.pk}").json()["lead"]
    assert fetched["phone"] == "+12025551234"
    assert fetched["listIds"] == [lead_list.pk]
    assert fetched["createdAt"].endswith("Z")


def test_lead_ids_are_in_input_order(post_leads):
    rows = [{"phone": f"+1202555{n:04d}"} for n in range(30)]
    body = post_leads(rows).json()
    phones = dict(Lead.objects.values_list("id", "phone"))
    assert [phones[i] for i in body["leadIds"]] == [r["phone"] for r in rows]


def test_without_list_id_it_uses_the_quick_sends_list(acme, post_leads):
    first = post_leads([{"phone": "+12025550001"}]).json()
    second = post_leads([{"phone": "+12025550002"}], listId="").json()
    third = post_leads([{"phone": "+12025550003"}], listId="  ").json()
    quick_sends = LeadList.objects.get(workspace=acme, name="Quick Sends")
    assert first["listId"] == second["listId"] == third["listId"] == quick_sends.pk
    assert first["leadListIds"] == [quick_sends.pk]
    assert quick_sends.memberships.count() == 3
    assert quick_sends.description == "Quick send messages"


def test_the_same_request_twice_is_all_duplicates(post_leads):
    rows = [JOHN, {"email": "jane@example.com"}]
    assert post_leads(rows).status_code == 201
    response = post_leads(rows)
    assert response.status_code == 200
    body = response.json()
    assert (body["savedCount"], body["duplicateCount"], body["totalProcessed"]) == (0, 2, 2)
    assert body["linkedCount"] == 0
    existing = [
        Lead.objects.get(phone="+12025551234").pk,
        Lead.objects.get(email="jane@example.com").pk,
    ]
    assert body["duplicateOnly"] is True
    assert body["existingLeadIds"] == body["leadIds"] == existing
    assert body["leadId"] == existing[0]
    assert [d["input"] for d in body["duplicates"]] == rows
    assert [d["existingLead"]["_id"] for d in body["duplicates"]] == existing
    assert Lead.objects.count() == 2


def test_duplicates_within_one_request_are_skipped(post_leads):
    rows = [
        {"phone": "202-555-1234", "firstName": "First"},
        {"phone": "+1 202 555 1234", "firstName": "Second"},
        {"email": "a@example.com"},
        {"email": "A@EXAMPLE.com", "phone": "2025559999"},
        {"phone": "(202) 555-9999"},  # seen on the row above, which was a duplicate
    ]
    body = post_leads(rows).json()
    assert (body["savedCount"], body["duplicateCount"], body["totalProcessed"]) == (2, 3, 5)
    assert Lead.objects.get(phone="+12025551234").first_name == "First"
    assert not Lead.objects.filter(phone="+12025559999").exists()


def test_a_lead_from_another_list_is_linked_not_overwritten(acme, post_leads):
    other = LeadList.objects.create(workspace=acme, name="Other")
    target = LeadList.objects.create(workspace=acme, name="Target")
    post_leads([{"phone": "+12025551234", "firstName": "Original"}], listId=other.pk)
    body = post_leads(
        [{"phone": "202 555 1234", "firstName": "Changed"}, {"phone": "+12025550000"}],
        listId=target.pk,
    ).json()
    assert (body["savedCount"], body["duplicateCount"], body["linkedCount"]) == (1, 1, 1)
    lead = Lead.objects.get(phone="+12025551234")
    assert lead.first_name == "Original"
    assert set(lead.lists.all()) == {other, target}
    again = post_leads([{"phone": "+12025551234"}], listId=target.pk).json()
    assert (again["duplicateCount"], again["linkedCount"]) == (1, 0)


def test_a_row_matching_two_leads_is_a_duplicate_of_the_first(acme, post_leads):
    target = LeadList.objects.create(workspace=acme, name="Target")
    post_leads([{"phone": "+12025551234"}, {"email": "b@example.com"}])
    by_phone = Lead.objects.get(phone="+12025551234")
    body = post_leads(
        [{"email": "b@example.com", "phone": "+12025551234"}], listId=target.pk
    ).json()
    assert (body["savedCount"], body["duplicateCount"], body["linkedCount"]) == (0, 1, 1)
    assert list(target.leads.all()) == [by_phone]


def test_an_invalid_row_rejects_the_whole_request(acme, post_leads):
    post_leads([{"phone": "+12025550000"}])
    before = snapshot()
    rows = [{"phone": "+12025551111"}, {"email": "ok@example.com"}, {}, {"phone": "12345"}]
    rows[2] = {"email": "x@example.com"}
    response = post_leads(rows)
    assert response.status_code == 400
    assert response.json()["error"] == "leads[3].phone: Invalid phone number"
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert (response.json()["row"], response.json()["field"]) == (3, "phone")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({"email": "not-an-email"}, "leads[0].email: Invalid email address"),
        ({"altPhone2": "555"}, "leads[0].altPhone2: Invalid phone number"),
        ({"firstName": "No identifiers"}, "leads[0].phone: A lead needs at least one phone"),
        ({"phone": 2025551234}, "leads[0].phone: Must be a string"),
        ({"phone": "+12025551234", "firstName": 7}, "leads[0].firstName: Must be a string"),
        ({"phone": "+12025551234", "customFields": []}, "leads[0].customFields: Must be an"),
        ({"phone": "+12025551234", "optedOut": "yes"}, "leads[0].optedOut: Must be a boolean"),
        ({"phone": "+12025551234", "lastName": "x" * 201}, "leads[0].lastName: Ensure"),
        ({"phone": "+12025551234", "notes": "a\x00b"}, "leads[0].notes: Null characters"),
        ({"phone": "+12025551234", "customFields": {"k": "\x00"}}, "leads[0].customFields: Null"),
    ],
)
def test_it_names_the_row_and_field_of_bad_input(post_leads, row, error):
    response = post_leads([row])
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    assert Lead.objects.count() == 0


def test_unknown_fields_are_ignored(post_leads):
    response = post_leads([{"phone": "+12025551234", "favouriteColour": "blue"}])
    assert response.status_code == 201


def test_default_country_code_applies_to_numbers_without_one(post_leads):
    post_leads([{"phone": "020 7946 0958"}], defaultCountryCode="+44")
    assert Lead.objects.get().phone == "+442079460958"
    response = post_leads([{"phone": "+12025551234"}], defaultCountryCode="+999")
    assert response.status_code == 400
    assert response.json()["error"].startswith("defaultCountryCode:")


def test_unknown_list_is_404(acme, globex, post_leads):
    foreign = LeadList.objects.create(workspace=globex, name="Theirs")
    for list_id in ["0" * 24, "nope", foreign.pk]:
        response = post_leads([{"phone": "+12025551234"}], listId=list_id)
        assert response.status_code == 404
        assert response.json() == {
            "error": "List not found. The specified listId does not exist or is invalid. "
            "Omit listId to use the Quick Sends list."
        }
    assert Lead.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"leads": []}, {"leads": None}, {"leads": "x"}, {"leads": [1]}, {"leads": {"a": 1}}],
)
def test_missing_or_malformed_leads_is_400(api, body):
    response = api.post("/api/leads", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("leads")
    assert response.json()["code"] == "VALIDATION_ERROR"


@override_settings(LEADS_MAX_PER_REQUEST=3)
def test_too_many_leads_in_one_request_is_400(post_leads):
    response = post_leads([{"phone": f"+1202555000{n}"} for n in range(4)])
    assert response.status_code == 400
    assert response.json()["error"] == "leads: At most 3 leads per request."
    assert Lead.objects.count() == 0


def test_past_due_workspace_cannot_upload(acme, post_leads):
    Workspace.objects.filter(pk=acme.pk).update(billing_status="past_due")
    response = post_leads([{"phone": "+12025551234"}])
    assert response.status_code == 402
    assert response.json() == {"error": "READ_ONLY", "code": "READ_ONLY", "reason": "past_due"}
    assert Lead.objects.count() == 0
    assert LeadList.objects.count() == 0


def test_new_leads_are_announced_after_commit(post_leads, django_capture_on_commit_callbacks):
    received = []

    def receiver(sender, workspace, lead_ids, **kwargs):
        received.append(lead_ids)

    leads_created.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            body = post_leads([{"phone": "+12025551234"}, {"phone": "+12025551235"}]).json()
        with django_capture_on_commit_callbacks(execute=True):
            post_leads([{"phone": "+12025551234"}])
    finally:
        leads_created.disconnect(receiver)
    assert received == [body["leadIds"]]


class TestIdempotency:
    def test_a_replay_returns_the_first_response_and_creates_nothing(self, api):
        body = {"leads": [{"phone": "+12025551234"}]}
        first = api.post("/api/leads", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
        again = api.post("/api/leads", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again["Idempotent-Replayed"] == "true"
        assert Lead.objects.count() == 1
        assert ListMembership.objects.count() == 1

    def test_the_same_key_with_another_body_is_422(self, api):
        api.post("/api/leads", {"leads": [{"phone": "+12025551234"}]}, format="json",
                 HTTP_IDEMPOTENCY_KEY="k2")  # fmt: skip
        response = api.post(
            "/api/leads",
            {"leads": [{"phone": "+12025559999"}]},
            format="json",
            HTTP_IDEMPOTENCY_KEY="k2",
        )
        assert response.status_code == 422
        assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert Lead.objects.count() == 1

    def test_a_repeat_while_the_first_runs_is_409(self, api, acme):
        from tuco.idempotency import request_fingerprint

        body = {"leads": [{"phone": "+12025551234"}]}
        IdempotencyRecord.objects.create(
            workspace=acme,
            key="k3",
            request_hash=request_fingerprint("POST", "/api/leads", body),
        )
        response = api.post("/api/leads", body, format="json", HTTP_IDEMPOTENCY_KEY="k3")
        assert response.status_code == 409
        assert response.json()["code"] == "IDEMPOTENCY_IN_PROGRESS"
        assert Lead.objects.count() == 0

    def test_a_crash_after_the_import_saves_nothing_and_frees_the_key(self, api):
        from leads import services

        real_import = services.lead_import

        def import_then_crash(**kwargs):
            real_import(**kwargs)
            raise RuntimeError("bug after the import")

        api.raise_request_exception = False
        body = {"leads": [{"phone": "+12025551234"}]}
        with mock.patch.object(services, "lead_import", import_then_crash):
            first = api.post("/api/leads", body, format="json", HTTP_IDEMPOTENCY_KEY="k5")
        assert first.status_code == 500
        assert Lead.objects.count() == LeadList.objects.count() == 0
        assert not IdempotencyRecord.objects.exists()
        again = api.post("/api/leads", body, format="json", HTTP_IDEMPOTENCY_KEY="k5")
        assert again.status_code == 201
        assert Lead.objects.count() == 1

    def test_a_rejected_request_is_replayed_as_rejected(self, api):
        body = {"leads": [{"phone": "123"}]}
        first = api.post("/api/leads", body, format="json", HTTP_IDEMPOTENCY_KEY="k4")
        again = api.post("/api/leads", body, format="json", HTTP_IDEMPOTENCY_KEY="k4")
        assert first.status_code == again.status_code == 400
        assert again.json() == first.json()


def test_a_rows_own_source_wins_over_the_requests(api, acme, post_leads):
    response = post_leads(
        [{"phone": "+12025550100", "source": "webinar"}, {"phone": "+12025550102"}],
        source="api",
    )
    assert response.status_code == 201
    sources = dict(Lead.objects.filter(workspace=acme).values_list("phone", "source"))
    assert sources == {"+12025550100": "webinar", "+12025550102": "api"}


def test_a_rejected_first_upload_leaves_no_quick_sends_list(api, acme, post_leads):
    before = LeadList.objects.filter(workspace=acme).count()
    response = post_leads([{"phone": "+12025550100"}, {"phone": "123"}])
    assert response.status_code == 400
    assert LeadList.objects.filter(workspace=acme).count() == before


def test_an_opted_out_row_records_when(api, acme, post_leads):
    response = post_leads([{"phone": "+12025550100", "optedOut": True}])
    assert response.status_code == 201
    lead = Lead.objects.get(pk=response.json()["leadIds"][0])
    assert lead.opted_out and lead.opted_out_at is not None


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048)
def test_a_body_over_the_size_limit_is_a_json_413(api, post_leads):
    response = post_leads([{"phone": "+12025550100", "notes": "x" * 4096}])
    assert response.status_code == 413
    assert response.json() == {"error": "Request body too large", "code": "PAYLOAD_TOO_LARGE"}
    assert response["x-correlation-id"].startswith("app_")
    assert not Lead.objects.exists()
