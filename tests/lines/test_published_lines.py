"""/api/lines/by-user, /api/lines/check-availability and /api/health-check against
the published pages (endpoint/get-lines.mdx, lines.mdx), with lines on the relay
simulator."""

from lines.models import Line

# get-lines.mdx, "Success response (200)": the fields of one line.
PUBLISHED_LINE_FIELDS = {
    "_id", "workspaceId", "phone", "email", "firstName", "lastName", "isActive",
    "provisioningStatus", "lineType", "dailyNewConversationsLimit",
    "dailyTotalMessagesLimit", "usage", "healthCheck", "createdAt", "updatedAt",
}  # fmt: skip


def test_by_user_example_shape(api, acme, globex, make_line):
    line = make_line(
        acme,
        phone="+16462230920",
        email="goforlisa@icloud.com",
        first_name="Lindsey",
        last_name="Rodriguez",
        daily_new_conversations_limit=20,
        daily_total_messages_limit=50,
    )
    make_line(globex)
    response = api.get("/api/lines/by-user")
    assert response.status_code == 200
    [body] = response.json()["lines"]
    assert set(body) >= PUBLISHED_LINE_FIELDS
    assert "password" not in body
    assert (
        body.items()
        >= {
            "_id": line.pk,
            "workspaceId": acme.pk,
            "phone": "+16462230920",
            "email": "goforlisa@icloud.com",
            "firstName": "Lindsey",
            "lastName": "Rodriguez",
            "isActive": True,
            "lineType": "byon",
            "dailyNewConversationsLimit": 20,
            "dailyTotalMessagesLimit": 50,
        }.items()
    )
    assert set(body["usage"]) >= {"date", "newConversationsCount", "totalMessagesCount"}
    assert body["healthCheck"]["status"] in ("healthy", "down")
    line.refresh_from_db()
    if line.health_checked_at is None:
        assert "lastCheckedAt" not in body["healthCheck"]
    else:
        assert body["healthCheck"]["lastCheckedAt"].endswith("Z")


def test_by_user_needs_a_key(anon):
    response = anon.get("/api/lines/by-user")
    assert (response.status_code, response.json()) == (401, {"error": "Unauthorized"})


def test_check_a_healthy_line(api, acme, make_line):
    line = make_line(acme)
    response = api.get(f"/api/lines/check-availability?id={line.pk}")
    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in ("success", "lineId", "status", "failures")} == {
        "success": True,
        "lineId": line.pk,
        "status": "healthy",
        "failures": [],
    }
    assert body["checkedAt"].endswith("Z")
    line.refresh_from_db()
    assert line.health_status == Line.Health.HEALTHY


def test_check_a_failing_line_records_it(api, acme, make_line, relay):
    line = make_line(acme)
    relay.configure(helper_connected=False)
    first = api.get(f"/api/lines/check-availability?id={line.pk}").json()
    assert first["failures"] == ["Private API helper is not connected"]
    assert first["consecutiveFailures"] == 1
    second = api.get(f"/api/lines/check-availability?id={line.pk}").json()
    assert (second["status"], second["consecutiveFailures"]) == ("down", 2)
    line.refresh_from_db()
    assert line.health_status == Line.Health.DOWN


def test_check_errors(api, acme, globex, make_line):
    response = api.get("/api/lines/check-availability")
    assert (response.status_code, response.json()) == (400, {"error": "Line ID is required"})
    inactive = make_line(acme, is_active=False)
    response = api.get(f"/api/lines/check-availability?id={inactive.pk}")
    assert (response.status_code, response.json()) == (400, {"error": "Line is not active"})
    theirs = make_line(globex)
    for line_id in [theirs.pk, "667f1f77bcf86cd799439011", "nope"]:
        response = api.get("/api/lines/check-availability", {"id": line_id})
        assert response.status_code == 404
        assert response.json()["error"] == "Line not found"


def test_health_check_checks_every_active_line(api, acme, globex, make_line, relay):
    first, second = make_line(acme), make_line(acme)
    make_line(acme, is_active=False)
    make_line(globex)
    relay.configure(imessage_signed_in=False)
    response = api.get("/api/health-check")
    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["checked"]) == (True, 2)
    assert {result["lineId"] for result in body["lines"]} == {first.pk, second.pk}
    for result in body["lines"]:
        assert result["status"] == "down"
        assert len(result["failures"]) == 1
        assert "The Mac is not signed in to iMessage" in result["failures"][0]
    # Signed in again, the lines stay quarantined until their cool-down has passed.
    relay.configure(imessage_signed_in=True)
    body = api.post("/api/health-check").json()
    assert (body["checked"], body["healthy"], body["down"]) == (2, 0, 2)
    first.refresh_from_db()
    assert first.health_status == "quarantined"
