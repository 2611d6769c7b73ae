"""Input rules of messaging endpoints that their serializers carry."""

import pytest


@pytest.mark.parametrize("query", ["page=0", "page=x", "limit=-1", "limit=2.5"])
def test_message_list_pages_are_positive_whole_numbers(api, query):
    response = api.get(f"/api/messages?{query}")
    assert response.status_code == 400
    field = query.split("=")[0]
    assert response.json() == {
        "error": f"{field}: must be a positive whole number",
        "code": "VALIDATION_ERROR",
    }


def test_message_list_limit_is_capped_and_empty_means_default(api):
    response = api.get("/api/messages?limit=100000&page=")
    assert response.status_code == 200
    assert response.json()["pagination"] == {
        "page": 1, "limit": 200, "totalCount": 0, "totalPages": 0,
    }  # fmt: skip


def test_cancel_for_lead_needs_a_lead_or_an_address(api):
    response = api.post("/api/messages/cancel-for-lead", {"leadId": " "}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "error": "Either leadId, recipientPhone, or recipientEmail is required"
    }


def test_send_reply_refuses_a_blank_text_before_the_missing_conversation(api):
    response = api.post("/api/unibox/send-reply", {"message": "   "}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "error": "message: This field may not be blank.",
        "code": "VALIDATION_ERROR",
    }
