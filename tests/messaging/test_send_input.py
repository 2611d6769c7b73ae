"""`POST /api/messages` input: each kind of bad body gets its own published text."""

import pytest

from messaging.models import Message


@pytest.mark.parametrize(
    "body,error",
    [
        ([1, 2], "Request body must be a JSON object"),
        (
            {"messageType": 5, "message": "x", "recipientPhone": "+14155550102"},
            "Invalid messageType. Must be email, sms, or imessage",
        ),
        ({"message": 5, "recipientPhone": "+14155550102"}, "message: must be a string"),
        (
            {"message": "", "recipientPhone": "+14155550102"},
            "Message and attachmentUrls cannot both be empty",
        ),
        (
            {"message": "x", "recipientPhone": "abc"},
            "recipientPhone: 'abc' is not a valid phone number",
        ),
        (
            {"message": "x", "recipientPhone": "+14155550102", "sendWindowStart": "09:00"},
            "sendWindowStart and sendWindowEnd must be given together",
        ),
        (
            {"message": "x", "recipientPhone": "+14155550102", "allowedDaysOfWeek": [7]},
            "allowedDaysOfWeek: must be a list of day numbers from 0 (Sunday) to 6 (Saturday)",
        ),
        (
            {"message": "x", "recipientPhone": "+14155550102", "allowedDaysOfWeek": "x"},
            "allowedDaysOfWeek: must be a list of day numbers from 0 (Sunday) to 6 (Saturday)",
        ),
        (
            {"message": "x", "recipientPhone": "+14155550102", "attachmentUrls": "x"},
            "attachmentUrls must be an array",
        ),
        (
            {"message": "x", "recipientPhone": "+14155550102", "attachmentUrls": ["a", "b", "c"]},
            "Maximum 2 attachments per message",
        ),
        (
            {"message": "x", "recipientPhone": "+14155550102", "sendFallbackSmsOnFailed": "yes"},
            "sendFallbackSmsOnFailed: must be true or false",
        ),
        (
            {"message": "x", "recipientPhone": "+14155550102", "scheduledDate": "soon"},
            "Invalid scheduledDate format",
        ),
        (
            {"message": "x", "recipientPhone": "+14155550102", "timezone": "Mars/Base"},
            (
                "Invalid timezone or time window settings. Please check your timezone and "
                "time format."
            ),
        ),
        (
            {"message": "x", "recipientPhone": "+14155550102", "batchId": "x" * 101},
            "batchId: must be at most 100 characters",
        ),
        (
            {"message": "x", "recipientPhone": "+14155550102", "leadId": ["x"]},
            "leadId: must be a string",
        ),
    ],
)
def test_a_bad_body_is_refused_with_its_text(api, make_line, acme, body, error):
    make_line(acme)
    r = api.post("/api/messages", body, format="json")
    assert r.status_code == 400, r.json()
    assert r.json()["error"] == error


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: all@example.com", "Hi\nthere", "Hi\rthere"])
def test_an_email_subject_with_a_line_break_is_refused(api, subject):
    response = api.post(
        "/api/messages",
        {"messageType": "email", "recipientEmail": "d@example.com", "message": "Hi",
         "subject": subject},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json() == {
        "error": "subject: must not contain line breaks",
        "code": "VALIDATION_ERROR",
    }
    assert not Message.objects.exists()
