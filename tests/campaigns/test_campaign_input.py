"""Rules of the campaigns API's input serializers that the other API tests leave out."""

import pytest

from campaigns.models import Step

pytestmark = pytest.mark.django_db

STEPS = [{"message": "Hi"}]


def test_page_and_limit_must_be_whole_numbers_and_are_held_in_range(api):
    response = api.get("/api/campaigns?page=a")
    assert response.status_code == 400
    assert response.json() == {"error": "page: Must be a whole number", "code": "VALIDATION_ERROR"}
    assert api.get("/api/campaigns?limit=1.5").json()["error"] == "limit: Must be a whole number"
    body = api.get("/api/campaigns?page=0&limit=1000").json()
    assert body["pagination"] == {"page": 1, "limit": 100, "totalCount": 0, "totalPages": 0}
    assert api.get("/api/campaigns?page=&limit=").json()["pagination"]["limit"] == 50


def test_a_changed_step_needs_a_message(api):
    campaign_id = api.post(
        "/api/campaigns", {"name": "Spring", "steps": STEPS}, format="json"
    ).json()["campaign"]["_id"]
    response = api.patch(f"/api/campaigns/{campaign_id}", {"steps": [{"delay": 1}]}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "error": "steps[0].message: A step needs a message",
        "code": "VALIDATION_ERROR",
    }
    assert list(Step.objects.values_list("message", flat=True)) == ["Hi"]


def test_days_of_the_week_are_kept_once_each_in_order(api):
    response = api.post(
        "/api/campaigns",
        {"name": "Spring", "steps": STEPS, "settings": {"allowedDaysOfWeek": [5, 1, 5, 0]}},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["campaign"]["settings"]["allowedDaysOfWeek"] == [0, 1, 5]


def test_an_action_must_be_one_of_the_four(api):
    response = api.put("/api/campaigns", {"campaignId": "x", "action": "boom"}, format="json")
    assert response.json() == {
        "error": "action: Must be start, pause, resume or retry_failed",
        "code": "VALIDATION_ERROR",
    }
