"""Creating, reading, changing campaigns through the API, and bad input."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import Campaign, Step
from leads.models import LeadList

pytestmark = pytest.mark.django_db

STEPS = [
    {"message": "Hi {firstName}", "delay": 0, "delayUnit": "minutes"},
    {"message": "Following up", "delay": 2, "delayUnit": "days"},
]
WITH_FALLBACK = [STEPS[0], {**STEPS[1], "smsFallbackMessage": "SMS"}]


def post(api, **body):
    body.setdefault("name", "Spring")
    body.setdefault("steps", STEPS)
    return api.post("/api/campaigns", body, format="json")


def test_it_creates_a_campaign_with_steps_lines_and_settings(api, make_line, make_list, twilio):
    line = make_line()
    lead_list = make_list(2)
    response = post(
        api,
        steps=WITH_FALLBACK,
        listId=lead_list.pk,
        lineIds=[line.pk],
        settings={
            "timezone": "America/New_York",
            "sendWindowStart": "09:00",
            "sendWindowEnd": "17:00",
            "allowedDaysOfWeek": [1, 2, 3, 4, 5],
            "replyBehavior": "continue",
            "sendImmediately": False,
        },
    )
    assert response.status_code == 201, response.json()
    assert response.json()["message"] == "Campaign created successfully"
    body = response.json()["campaign"]
    assert body["_id"]
    assert body["name"] == "Spring"
    assert body["listId"] == lead_list.pk
    assert body["lineIds"] == [line.pk]
    assert body["status"] == "draft"
    assert body["steps"][1] == {
        "message": "Following up",
        "delay": 2,
        "delayUnit": "days",
        "messageType": "imessage",
        "smsFallbackMessage": "SMS",
        "type": "message",
        "stopRules": [],
        "branches": [],
    }
    assert body["settings"] == {
        "sendImmediately": False,
        "randomizeOrder": False,
        "timezone": "America/New_York",
        "sendWindowStart": "09:00",
        "sendWindowEnd": "17:00",
        "allowedDaysOfWeek": [1, 2, 3, 4, 5],
        "replyBehavior": "continue",
    }
    assert body["stats"] == {
        "total": 0, "pending": 0, "sent": 0, "delivered": 0, "opened": 0,
        "replied": 0, "failed": 0, "fallback": 0, "cancelled": 0, "stalled": 0,
        "stopped": 0,
    }  # fmt: skip
    assert body["createdAt"].endswith("Z")
    assert body["startedAt"] is None
    assert api.get(f"/api/campaigns/{body['_id']}").json()["name"] == "Spring"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"steps": []}, "steps: At least one step is required"),
        ({"steps": [{"message": ""}]}, "steps[0].message: A step needs a message"),
        ({"steps": [{"message": "x", "delay": -1}]}, "steps[0].delay: Must be a whole number"),
        ({"steps": [{"message": "x", "delay": 2, "delayUnit": "weeks"}]}, "steps.0.delayUnit"),
        ({"steps": [{"message": "x", "delay": 400}]}, "steps[0].delay: At most 365 days"),
        ({"name": ""}, "name: A campaign needs a name"),
        ({"settings": {"timezone": "Mars/Base"}}, "settings.timezone"),
        ({"settings": {"sendWindowStart": "25:00"}}, "settings.sendWindowStart"),
        ({"settings": {"allowedDaysOfWeek": [7]}}, "settings.allowedDaysOfWeek"),
        ({"settings": {"sendWindowStart": "09:00"}},
         "settings.sendWindowEnd: Give both ends of the send window, or neither"),
        ({"settings": {"sendWindowEnd": "17:00", "sendWindowStart": ""}},
         "settings.sendWindowStart: Give both ends of the send window, or neither"),
    ],
)  # fmt: skip
def test_it_rejects_bad_input_and_saves_nothing(api, body, error):
    response = post(api, **body)
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert response.json()["error"].startswith(error), response.json()
    assert not Campaign.objects.exists()
    assert not Step.objects.exists()


def test_it_rejects_unknown_and_foreign_lines_and_lists(api, globex, make_line):
    foreign_line = make_line(workspace=globex)
    foreign_list = LeadList.objects.create(workspace=globex, name="Theirs")
    for body, message in [
        ({"lineIds": [foreign_line.pk]}, "Line not found"),
        ({"lineIds": ["nope"]}, "Line not found"),
        ({"listId": foreign_list.pk}, "List not found"),
        ({"listId": "0" * 24}, "List not found"),
    ]:
        response = post(api, **body)
        assert response.status_code == 404
        assert response.json()["error"] == message
    assert not Campaign.objects.exists()


def test_another_workspace_cannot_see_or_touch_a_campaign(api, globex_api):
    campaign_id = post(api).json()["campaign"]["_id"]
    assert globex_api.get(f"/api/campaigns/{campaign_id}").status_code == 404
    assert (
        globex_api.patch(f"/api/campaigns/{campaign_id}", {"name": "x"}, format="json").status_code
        == 404
    )
    response = globex_api.put(
        "/api/campaigns", {"campaignId": campaign_id, "action": "start"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error"] == "Campaign not found"
    assert globex_api.get("/api/campaigns").json()["campaigns"] == []


def test_it_changes_a_campaign(api, make_line):
    campaign_id = post(api).json()["campaign"]["_id"]
    line = make_line()
    response = api.patch(
        f"/api/campaigns/{campaign_id}",
        {"name": "Renamed", "lineIds": [line.pk], "settings": {"replyBehavior": "continue"},
         "steps": [{"message": "Only one"}]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["name"] == "Renamed"
    assert body["lineIds"] == [line.pk]
    assert body["settings"]["replyBehavior"] == "continue"
    assert [s["message"] for s in body["steps"]] == ["Only one"]


def test_it_rejects_unknown_actions_and_wrong_transitions(api, make_line):
    make_line()
    campaign_id = post(api).json()["campaign"]["_id"]
    response = api.put(
        "/api/campaigns", {"campaignId": campaign_id, "action": "explode"}, format="json"
    )
    assert response.status_code == 400
    response = api.put(
        "/api/campaigns", {"campaignId": campaign_id, "action": "pause"}, format="json"
    )
    assert response.status_code == 409
    response = api.put(
        "/api/campaigns", {"campaignId": campaign_id, "action": "resume"}, format="json"
    )
    assert response.status_code == 409


def test_it_refuses_to_start_without_a_healthy_line(api, make_line):
    make_line(health_status="down")
    make_line(is_active=False)
    campaign_id = post(api).json()["campaign"]["_id"]
    response = api.put(
        "/api/campaigns", {"campaignId": campaign_id, "action": "start"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "No healthy line for this campaign: add an active line that is not down",
        "code": "NO_HEALTHY_LINE",
    }
    assert Campaign.objects.get().status == "draft"


def test_listing_reads_stats_for_a_whole_page_in_constant_queries(api, make_line, make_list):
    make_line()
    lead_list = make_list(3)
    for i in range(2):
        campaign_id = post(api, name=f"C{i}", listId=lead_list.pk).json()["campaign"]["_id"]
        api.put("/api/campaigns", {"campaignId": campaign_id, "action": "start"}, format="json")
    with CaptureQueriesContext(connection) as few:
        response = api.get("/api/campaigns")
    assert [c["stats"]["total"] for c in response.json()["campaigns"]] == [6, 6]
    for i in range(3):
        campaign_id = post(api, name=f"More{i}", listId=lead_list.pk).json()["campaign"]["_id"]
        api.put("/api/campaigns", {"campaignId": campaign_id, "action": "start"}, format="json")
    with CaptureQueriesContext(connection) as many:
        response = api.get("/api/campaigns")
    body = response.json()
    assert body["pagination"] == {"page": 1, "limit": 50, "totalCount": 5, "totalPages": 1}
    assert [c["stats"]["pending"] for c in body["campaigns"]] == [6] * 5
    assert len(many.captured_queries) == len(few.captured_queries)


def test_a_change_must_leave_both_ends_of_the_send_window_or_neither(api):
    settings = {"sendWindowStart": "09:00", "sendWindowEnd": "17:00"}
    campaign_id = post(api, settings=settings).json()["campaign"]["_id"]
    url = f"/api/campaigns/{campaign_id}"
    response = api.patch(url, {"settings": {"sendWindowEnd": ""}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == (
        "settings.sendWindowEnd: Give both ends of the send window, or neither"
    )
    assert Campaign.objects.get().send_window_end == "17:00"
    # One end moved, the other kept: fine; both cleared: no window.
    response = api.patch(url, {"settings": {"sendWindowStart": "10:00"}}, format="json")
    assert response.status_code == 200
    assert response.json()["settings"]["sendWindowStart"] == "10:00"
    response = api.patch(
        url, {"settings": {"sendWindowStart": "", "sendWindowEnd": ""}}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["settings"]["sendWindowEnd"] == ""


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ({"message": "x", "smsFallbackMessage": "Text"}, "steps[1].smsFallbackMessage"),
        ({"message": "x", "messageType": "sms"}, "steps[1].messageType"),
    ],
)
def test_sms_steps_and_fallback_texts_need_twilio(api, acme, step, field):
    response = post(api, steps=[STEPS[0], step])
    assert response.status_code == 400
    assert response.json()["code"] == "FALLBACK_NOT_CONFIGURED"
    assert response.json()["error"].startswith(f"{field}: ")
    assert not Campaign.objects.exists()
    campaign_id = post(api).json()["campaign"]["_id"]
    response = api.patch(f"/api/campaigns/{campaign_id}", {"steps": [step]}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "FALLBACK_NOT_CONFIGURED"
    assert [s.message for s in Step.objects.order_by("position")] == [s["message"] for s in STEPS]


def test_a_disabled_twilio_setup_does_not_count(api, twilio):
    twilio.enabled = False
    twilio.save()
    response = post(api, steps=WITH_FALLBACK)
    assert response.status_code == 400
    assert response.json()["code"] == "FALLBACK_NOT_CONFIGURED"
    twilio.enabled = True
    twilio.save()
    assert post(api, steps=WITH_FALLBACK).status_code == 201
