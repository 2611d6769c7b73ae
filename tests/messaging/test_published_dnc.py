"""/api/dnc as features/dnc.mdx shows it: list with page, limit and search, add a
phone (normalized to E.164) or an email, remove by ?id=."""

from messaging.models import DoNotContact


def test_add_the_example_phone_normalized(api, acme):
    response = api.post("/api/dnc", {"phone": "(904) 295-6129", "reason": "manual"}, format="json")
    assert response.status_code == 201
    entry = response.json()["entry"]
    assert (entry["phone"], entry["email"], entry["reason"]) == ("+19042956129", None, "manual")
    assert DoNotContact.objects.get(workspace=acme).value == "+19042956129"
    # Adding it again, however written, is the same entry.
    again = api.post("/api/dnc", {"phone": "+1 904 295 6129"}, format="json")
    assert again.status_code == 200
    assert again.json()["alreadyExists"] is True
    assert again.json()["entry"]["_id"] == entry["_id"]


def test_add_an_email(api, acme):
    response = api.post("/api/dnc", {"email": " Frank@Example.com "}, format="json")
    assert response.status_code == 201
    assert response.json()["entry"]["email"] == "frank@example.com"


def test_list_the_example_query(api, acme, globex_api):
    api.post("/api/dnc", {"phone": "(904) 295-6129", "reason": "manual"}, format="json")
    api.post("/api/dnc", {"phone": "(415) 555-0132"}, format="json")
    globex_api.post("/api/dnc", {"phone": "(904) 295-0000"}, format="json")
    response = api.get("/api/dnc?page=1&limit=50&search=904")
    assert response.status_code == 200
    body = response.json()
    assert [entry["phone"] for entry in body["entries"]] == ["+19042956129"]
    assert (body["total"], body["page"], body["limit"], body["totalPages"]) == (1, 1, 50, 1)
    assert api.get("/api/dnc").json()["total"] == 2


def test_remove_by_id(api, acme):
    entry_id = api.post("/api/dnc", {"phone": "(904) 295-6129"}, format="json").json()["entry"][
        "_id"
    ]
    response = api.delete(f"/api/dnc?id={entry_id}")
    assert (response.status_code, response.json()) == (200, {"success": True})
    assert not DoNotContact.objects.exists()
    response = api.delete("/api/dnc?id=507f1f77bcf86cd799439011")
    assert response.status_code == 404


def test_another_workspace_cannot_remove_an_entry(api, globex_api):
    entry_id = api.post("/api/dnc", {"phone": "(904) 295-6129"}, format="json").json()["entry"][
        "_id"
    ]
    assert globex_api.delete(f"/api/dnc?id={entry_id}").status_code == 404
    assert DoNotContact.objects.filter(pk=entry_id).exists()
