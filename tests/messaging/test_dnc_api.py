import pytest

from leads.services import lead_get_or_create
from messaging.models import DoNotContact, Message


@pytest.fixture
def lead(acme):
    return lead_get_or_create(workspace=acme, data={"phone": "+14155550002"})[0]


def test_it_adds_a_normalized_phone_and_cancels_waiting_messages(api, acme, lead):
    waiting = Message.objects.create(
        workspace=acme, lead=lead, recipient_phone=lead.phone, body="x", status="scheduled"
    )
    response = api.post("/api/dnc", {"phone": "(415) 555-0002", "reason": "asked"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["entry"]["phone"] == "+14155550002"
    assert body["entry"]["reason"] == "asked"
    assert (body["alreadyExists"], body["cancelledCount"]) == (False, 1)
    assert Message.objects.get(pk=waiting.pk).status == "cancelled"


def test_adding_twice_returns_the_existing_entry(api, acme):
    first = api.post("/api/dnc", {"email": "Ann@Example.com"}, format="json").json()
    again = api.post("/api/dnc", {"email": "ann@example.com "}, format="json")
    assert again.status_code == 200
    assert again.json()["alreadyExists"] is True
    assert again.json()["entry"]["_id"] == first["entry"]["_id"]
    assert DoNotContact.objects.count() == 1


@pytest.mark.parametrize(
    "body, error",
    [
        ({}, "Either phone or email is required"),
        ({"phone": "", "email": ""}, "Either phone or email is required"),
        ({"phone": "+14155550002", "email": "a@b.co"}, "Provide either phone or email, not both"),
        ({"phone": "12"}, "phone: Invalid phone number"),
        ({"email": "nope"}, "email: Invalid email address"),
    ],
)
def test_it_rejects_bad_input(api, body, error):
    response = api.post("/api/dnc", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": error, "code": "VALIDATION_ERROR"}
    assert not DoNotContact.objects.exists()


def test_it_lists_searches_and_paginates(api, acme):
    for phone in ("+14155550002", "+14155550004", "+12125550102"):
        api.post("/api/dnc", {"phone": phone}, format="json")
    api.post("/api/dnc", {"email": "ann@example.com", "reason": "lawyer"}, format="json")
    body = api.get("/api/dnc?limit=3").json()
    assert (body["total"], body["totalPages"], len(body["entries"])) == (4, 2, 3)
    assert [e["phone"] for e in api.get("/api/dnc?search=415").json()["entries"]] == [
        "+14155550004",
        "+14155550002",
    ]
    assert [e["email"] for e in api.get("/api/dnc?search=lawyer").json()["entries"]] == [
        "ann@example.com"
    ]


def test_it_deletes_by_id(api, acme):
    entry_id = api.post("/api/dnc", {"phone": "+14155550002"}, format="json").json()["entry"]["_id"]
    assert api.delete(f"/api/dnc?id={entry_id}").json() == {"success": True}
    assert not DoNotContact.objects.exists()
    missing = api.delete(f"/api/dnc?id={entry_id}")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "Do-not-contact entry not found", "code": "NOT_FOUND"},
    )
    assert api.delete("/api/dnc").status_code == 400


def test_entries_of_another_workspace_are_invisible(api, globex_api):
    entry_id = api.post("/api/dnc", {"phone": "+14155550002"}, format="json").json()["entry"]["_id"]
    assert globex_api.get("/api/dnc").json()["entries"] == []
    assert globex_api.delete(f"/api/dnc?id={entry_id}").status_code == 404
    assert DoNotContact.objects.filter(pk=entry_id).exists()
    # The same address in another workspace is a separate entry.
    assert globex_api.post("/api/dnc", {"phone": "+14155550002"}, format="json").status_code == 201
