"""The availability endpoints against their published pages' examples
(endpoint/lead-check-availability.mdx, bulk-check-availability.mdx,
check-availability.mdx, check-availability-rr.mdx and the seed 000), on a line
whose relay is the simulator: a number ending in an even digit is on iMessage,
one ending in 9999 makes the relay fail, an icloud.com address is on iMessage."""

import pytest

from leads.models import Lead


@pytest.fixture
def line(acme, make_line):
    return make_line(acme)


def test_get_one_lead_example(api, acme, line):
    lead = Lead.objects.create(workspace=acme, phone="+12025551234")
    response = api.get(f"/api/leads/check-availability?id={lead.pk}")
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "leadId": lead.pk,
        "available": True,
        "status": "available",
    }
    lead.refresh_from_db()
    assert lead.availability_status == "available"


def test_get_one_lead_errors(api, line):
    response = api.get("/api/leads/check-availability")
    assert (response.status_code, response.json()) == (400, {"error": "Lead ID is required"})
    response = api.get("/api/leads/check-availability?id=667f1f77bcf86cd799439012")
    assert (response.status_code, response.json()) == (404, {"error": "Lead not found"})


def test_post_quick_check_example(api, line):
    response = api.post("/api/leads/check-availability", {"address": "+12025551234"}, format="json")
    assert response.status_code == 200
    assert {key: response.json()[key] for key in ("success", "available", "address")} == {
        "success": True,
        "available": True,
        "address": "+12025551234",
    }


def test_an_empty_address_falls_through_to_the_leads_path(api, acme, line):
    """The seed's warning: `{"address": ""}` is ignored, and without leadIds or listId
    the leads path finds nothing (404); with leadIds it checks those leads."""
    response = api.post("/api/leads/check-availability", {"address": ""}, format="json")
    assert (response.status_code, response.json()) == (404, {"error": "No leads found to check"})
    lead = Lead.objects.create(workspace=acme, phone="+12025551234")
    response = api.post(
        "/api/leads/check-availability", {"address": "", "leadIds": [lead.pk]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"leadId": lead.pk, "available": True, "status": "available"}
    ]


def test_bulk_by_lead_ids_example(api, acme, line):
    leads = [
        Lead.objects.create(workspace=acme, phone=phone)
        for phone in ("+12025551234", "+12025551235", "+12025559999")
    ]
    response = api.post(
        "/api/leads/check-availability", {"leadIds": [x.pk for x in leads]}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "checked": 3,
        "successful": 2,
        "errors": 1,
        "results": [
            {"leadId": leads[0].pk, "available": True, "status": "available"},
            {"leadId": leads[1].pk, "available": False, "status": "unavailable"},
            # A failed check is still a boolean `available`.
            {"leadId": leads[2].pk, "available": False, "status": "error"},
        ],
        "processingMode": "synchronous",
    }
    assert [x.availability_status for x in Lead.objects.order_by("phone")] == [
        "available",
        "unavailable",
        "error",
    ]


def test_get_check_availability_example(api, line):
    response = api.get("/api/check-availability?address=%2B14155551234")
    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in ("success", "available", "address")} == {
        "success": True,
        "available": True,
        "address": "+14155551234",
    }


def test_get_check_availability_not_available_example(api, line):
    response = api.get("/api/check-availability", {"address": "+14155551233"})
    body = response.json()
    assert {key: body[key] for key in ("success", "available", "address")} == {
        "success": True,
        "available": False,
        "address": "+14155551233",
    }


def test_get_check_availability_errors(api, line):
    response = api.get("/api/check-availability")
    assert response.status_code == 400
    assert response.json() == {"error": "Address parameter is required (phone or email)"}


def test_post_check_availability_single_example(api, line):
    response = api.post("/api/check-availability", {"address": "+14155551234"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert [(r["address"], r["available"]) for r in body["results"]] == [("+14155551234", True)]


def test_post_check_availability_batch_example(api, line):
    addresses = ["+14155551234", "+14155559999", "frank@example.com"]
    response = api.post("/api/check-availability", {"addresses": addresses}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert [(r["address"], r["available"]) for r in body["results"]] == [
        ("+14155551234", True),
        ("+14155559999", False),
        ("frank@example.com", False),
    ]


def test_post_check_availability_errors(api, line):
    response = api.post("/api/check-availability", {}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "addresses array is required and must not be empty"}
    response = api.post(
        "/api/check-availability",
        {"addresses": [f"+1415555{n:04d}" for n in range(101)]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Maximum 100 addresses per request"}


def test_round_robin_examples(api, line):
    response = api.post(
        "/api/check-availability-rr",
        {"phones": ["+14155551234"], "emails": ["frank@example.com"]},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["available"] is True
    response = api.post(
        "/api/check-availability-rr",
        {"phones": ["+14155551233"], "emails": ["frank@example.com"]},
        format="json",
    )
    assert (response.status_code, response.json()) == (
        200,
        {"available": False, "reason": "Contact not available on iMessage"},
    )
    response = api.post("/api/check-availability-rr", {}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert (body["available"], body["reason"]) == (False, "No phone or email addresses provided")
