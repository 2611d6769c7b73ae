"""`POST /api/messages`, `POST /api/messages/cancel-for-lead` and `GET /api/replies`
run with the published pages' own examples (send-message.mdx,
send-with-attachments.mdx, cancel-for-lead.mdx, get-replies.mdx, openapi.json and the
published n8n workflow): same requests (with our lead ids for theirs), the published
answers' fields and types, the published error texts in full."""

import json
import uuid
from pathlib import Path

import pytest
from django.utils import timezone

from leads.models import Lead
from leads.services import lead_get_or_create
from messaging.inbound import inbound_record
from messaging.models import Message

PUBLISHED = Path(__file__).with_name("published")

# The 201 answer of send-message.mdx and openapi.json's minimalSent / ghlLeadSent.
SENT_201 = {
    "success": True,
    "status": "sent",
    "message": {
        "_id": "69b344bc6dae1d942ece4d0e",
        "message": "Here's your document.",
        "messageType": "imessage",
        "status": "sent",
        "direction": "sent",
        "fromLineId": "69ab427ac1feb77d7f46462e",
        "recipientPhone": "+919042956129",
        "recipientEmail": "goforbg@icloud.com",
        "recipientName": "BG Real",
        "leadId": "69b2c41d352a78479d2c623b",
        "workspaceId": "org_3AZs4H8UsfFxVFONr6H4K75okaG",
        "createdAt": "2026-03-12T22:57:00.856Z",
        "updatedAt": "2026-03-12T22:57:02.892Z",
        "sentAt": "2026-03-12T22:57:02.892Z",
        "externalMessageId": "5CA93911-F0FE-4D1F-8D8C-1E3495A124F6",
    },
    "leadId": "69b2c41d352a78479d2c623b",
    "ghlContactId": "aMUQn0u0Z7cw0NQ7tJ5R",
    "ghlLocationId": "eL7DD22BdZ0rismu7qCA",
    "hsPortalId": None,
    "hsContactId": None,
}
# openapi.json's 200 example: the recipient matched a lead the workspace had.
DUPLICATE_200 = {
    "success": True,
    "status": "sent",
    "leadId": "69b2c41d352a78479d2c623b",
    "ghlContactId": "aMUQn0u0Z7cw0NQ7tJ5R",
    "ghlLocationId": "eL7DD22BdZ0rismu7qCA",
    "hsPortalId": None,
    "hsContactId": None,
    "duplicateOnly": True,
    "existingLeadIds": ["69b2c41d352a78479d2c623b"],
    "leadIds": ["69b2c41d352a78479d2c623b"],
    "duplicateMessage": "Lead was duplicate; message sent using existing lead.",
    "message": {"_id": "69b344bc6dae1d942ece4d0e", "message": "Hi"},
}


def send(api, **body):
    return api.post("/api/messages", body, format="json")


# What a message has only once it is sent: the answer leaves these out while it waits.
UNSET_WHILE_QUEUED = {"message.fromLineId", "message.sentAt", "message.externalMessageId"}


def assert_has_published_fields(ours: dict, published: dict, path: str = "") -> None:
    """Every published field is in our answer, objects checked field by field; a
    value may be null, or left out of the message, where ours is not set yet (a
    queued message has no line, sentAt or externalMessageId)."""
    for name, value in published.items():
        if f"{path}{name}" in UNSET_WHILE_QUEUED and name not in ours:
            continue
        assert name in ours, f"{path}{name}"
        if isinstance(value, dict):
            assert isinstance(ours[name], dict), f"{path}{name}"
            assert_has_published_fields(ours[name], value, f"{path}{name}.")
        elif value is not None and ours[name] is not None:
            assert type(ours[name]) is type(value), f"{path}{name}"


@pytest.fixture
def active_line(line):
    return line


@pytest.fixture
def lead(acme):
    return lead_get_or_create(
        workspace=acme,
        data={"firstName": "BG", "lastName": "Real", "phone": "+919042956129",
              "email": "goforbg@icloud.com"},
    )[0]  # fmt: skip


# Requests


@pytest.mark.parametrize(
    "example",
    [
        # send-message.mdx: "Minimal using leadId", "With attachments"
        {"message": "Hi, this is a test from Tuco."},
        {"message": "Here is the file.", "attachmentUrls": ["https://example.com/doc.pdf"]},
        # send-with-attachments.mdx: image + text, video only, voice note, video + text
        {"message": "Check this out!", "attachmentUrls": ["https://example.com/photo.jpg"]},
        {"attachmentUrls": ["https://example.com/intro-video.mp4"]},
        {"attachmentUrls": ["https://example.com/voice-note.caf"]},
        {
            "message": "I made this for you. Whenever you are ready: example.com/schedule",
            "attachmentUrls": ["https://example.com/personalized-video.mp4"],
        },
    ],
)
def test_the_lead_id_examples_answer_201_with_the_published_fields(
    api, acme, active_line, lead, example
):
    response = send(api, leadId=lead.pk, **example)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert_has_published_fields(body, SENT_201)
    assert body["status"] == body["message"]["status"] == "pending"
    assert body["leadId"] == body["message"]["leadId"] == lead.pk
    message = body["message"]
    assert message["message"] == example.get("message", "")
    assert message["attachmentUrls"] == example.get("attachmentUrls", [])
    assert message["workspaceId"] == acme.pk
    # The lead's address and name: nothing was given in the body.
    assert message["recipientPhone"] == "+919042956129"
    assert message["recipientEmail"] == "goforbg@icloud.com"
    assert message["recipientName"] == "BG Real"
    assert "scheduledDate" not in body
    assert body["reason"].startswith("Queued")
    assert (body["ghlContactId"], body["hsPortalId"]) == (None, None)


def test_the_hubspot_example_echoes_its_ids(api, active_line, lead):
    response = send(
        api, message="Hi from Tuco.", leadId=lead.pk, hsContactId="120001", hsPortalId="991001"
    )
    assert response.status_code == 201
    body = response.json()
    # openapi.json's hubspotLeadSent.
    expected = {"ghlContactId": None, "ghlLocationId": None, "hsPortalId": "991001",
                "hsContactId": "120001"}  # fmt: skip
    assert {k: body[k] for k in expected} == expected
    # Unset ids are left out of the message object.
    assert {k: body["message"].get(k) for k in expected} == expected
    assert "ghlContactId" not in body["message"]
    message = Message.objects.get(pk=body["message"]["_id"])
    assert (message.hs_contact_id, message.hs_portal_id) == ("120001", "991001")
    listed = api.get("/api/messages", {"leadId": lead.pk}).json()["messages"][0]
    assert {k: listed[k] for k in expected} == expected


def test_the_ghl_example_echoes_its_ids(api, active_line, lead):
    response = send(
        api,
        message="Hi from Tuco.",
        leadId=lead.pk,
        ghlContactId="ghl_contact_001",
        ghlLocationId="eL7DD22BdZ0rismu7qCA",
    )
    assert response.status_code == 201
    body = response.json()
    # openapi.json's ghlLeadSent.
    expected = {"ghlContactId": "ghl_contact_001", "ghlLocationId": "eL7DD22BdZ0rismu7qCA",
                "hsPortalId": None, "hsContactId": None}  # fmt: skip
    assert {k: body[k] for k in expected} == expected
    detail = api.get(f"/api/messages/{body['message']['_id']}").json()
    assert {k: detail[k] for k in expected} == expected


def test_the_published_n8n_send_node_works_as_written(api, acme, active_line):
    """The "Tuco Send iMessage" node of the published n8n workflow, with its template
    filled in the way n8n fills it: blanks where the input has no value."""
    workflow = json.loads((PUBLISHED / "n8n-ghl-send-imessage-and-receive.json").read_text())
    node = next(n for n in workflow["nodes"] if n["name"] == "Tuco Send iMessage")
    template = node["parameters"]["jsonBody"].removeprefix("=")
    values = {
        "$json.message": "Hi from n8n",
        "$json.recipientPhone || $json.phone": "+14155550102",
        "$json.recipientEmail || $json.email || ''": "",
        "$json.recipientName || $json.name || ''": "Dana Scully",
        "$json.fromLineId || ''": "",
        "$json.ghlContactId || $json.contactId || ''": "aMUQn0u0Z7cw0NQ7tJ5R",
        "$json.ghlLocationId || $json.locationId || ''": "eL7DD22BdZ0rismu7qCA",
    }
    for expression, value in values.items():
        template = template.replace("{{ " + expression + " }}", value)
    body = json.loads(template)
    assert node["parameters"]["url"].endswith("/api/messages")
    response = api.post("/api/messages", body, format="json")
    assert response.status_code == 201, response.json()
    answer = response.json()
    assert answer["ghlContactId"] == "aMUQn0u0Z7cw0NQ7tJ5R"
    assert answer["ghlLocationId"] == "eL7DD22BdZ0rismu7qCA"
    assert answer["message"]["recipientName"] == "Dana Scully"
    assert "fromLineId" not in answer["message"]
    lead = Lead.objects.get(pk=answer["leadId"])
    assert (lead.first_name, lead.last_name, lead.phone) == ("Dana", "Scully", "+14155550102")


def test_a_recipient_that_matches_a_lead_answers_200_with_duplicate_only(
    api, acme, active_line, lead
):
    response = send(api, message="Hi", recipientPhone="+919042956129")
    assert response.status_code == 200
    body = response.json()
    assert_has_published_fields(body, DUPLICATE_200)
    assert body["duplicateOnly"] is True
    assert body["existingLeadIds"] == body["leadIds"] == [lead.pk]
    assert body["duplicateMessage"] == DUPLICATE_200["duplicateMessage"]
    assert body["leadId"] == body["message"]["leadId"] == lead.pk
    # The name comes from the lead when the body has none.
    assert body["message"]["recipientName"] == "BG Real"
    assert Lead.objects.count() == 1
    # A new recipient is a new lead: 201, no duplicate fields.
    fresh = send(api, message="Hi", recipientPhone="+14155550102")
    assert fresh.status_code == 201
    assert "duplicateOnly" not in fresh.json()


def test_the_creator_is_the_api_keys_user_or_the_signed_in_one(
    api, acme, alice, bob, client, active_line, lead
):
    by_key = send(api, message="Hi", leadId=lead.pk).json()["message"]
    assert by_key["createdByUserId"] == str(alice.pk)
    client.force_login(bob)
    by_session = client.post(
        "/api/messages", {"message": "Hi", "leadId": lead.pk}, content_type="application/json"
    ).json()["message"]
    assert by_session["createdByUserId"] == str(bob.pk)


def test_the_line_phone_and_email_are_on_the_message(api, acme, make_sim_line, lead):
    line = make_sim_line(acme, phone="+14155550100", email="line@icloud.com")
    body = send(api, message="Hi", leadId=lead.pk, fromLineId=line.pk).json()
    message = body["message"]
    assert (message["fromLineId"], message["fromLinePhone"], message["fromLineEmail"]) == (
        line.pk,
        "+14155550100",
        "line@icloud.com",
    )


def test_a_scheduled_send_answers_its_date_and_reason_at_the_top(api, active_line, lead):
    body = send(api, message="Later", leadId=lead.pk, scheduledDate="2099-10-15T14:30:00Z").json()
    assert body["status"] == "scheduled"
    assert body["scheduledDate"] == "2099-10-15T14:30:00.000Z"
    assert body["reason"] == "Scheduled: the message is sent at 2099-10-15T14:30:00.000Z"


# Errors: openapi.json's 400 examples of POST /api/messages, in full.


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"message": "", "attachmentUrls": []}, "Message and attachmentUrls cannot both be empty"),
        ({"message": "x", "messageType": "fax"},
         "Invalid messageType. Must be email, sms, or imessage"),
        ({"message": "x", "attachmentUrls": "https://example.com/a.png"},
         "attachmentUrls must be an array"),
        ({"message": "x", "attachmentUrls": [f"https://example.com/{n}.png" for n in "abc"]},
         "Maximum 2 attachments per message"),
        ({"message": "x", "scheduledDate": "next tuesday"}, "Invalid scheduledDate format"),
        ({"message": "x", "sendWindowStart": "9am", "sendWindowEnd": "17:00"},
         "Invalid time format. sendWindowStart and sendWindowEnd must be in HH:mm format "
         "(e.g., 09:00, 17:00)"),
        ({"message": "x", "timezone": "Mars/Olympus"},
         "Invalid timezone or time window settings. Please check your timezone and time "
         "format."),
        ({"message": "x", "sendFallbackSmsOnFailed": True},
         "sendFallbackSmsOnFailed is true but fallback SMS is not configured. Configure "
         "fallback in workspace settings (Settings → Fallback) or set "
         "sendFallbackSmsOnFailed to false."),
    ],
)  # fmt: skip
def test_validation_errors_are_the_published_texts(api, active_line, body, error):
    response = send(api, recipientPhone="+14155550102", **body)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert not Message.objects.exists()
    assert not Lead.objects.exists()


def test_the_fallback_error_has_its_code(api, active_line):
    response = send(api, message="x", recipientPhone="+14155550102", sendFallbackSmsOnFailed=True)
    assert response.json()["code"] == "FALLBACK_NOT_CONFIGURED"


def test_a_body_that_is_not_an_object_or_not_json(api, active_line):
    response = api.post("/api/messages", [1], format="json")
    assert (response.status_code, response.json()["error"]) == (
        400,
        "Request body must be a JSON object",
    )
    for headers in ({}, {"HTTP_IDEMPOTENCY_KEY": "k-1"}):
        broken = api.post("/api/messages", "{not json", content_type="application/json", **headers)
        assert (broken.status_code, broken.json()["error"]) == (
            400,
            "Invalid request body (JSON required)",
        )


def test_no_recipient_and_no_line_are_the_published_texts(api, acme, make_sim_line):
    no_line = send(api, message="Hi", recipientPhone="+14155550102")
    assert no_line.json() == {
        "error": "No active lines in workspace. Add and activate a line, or provide fromLineId."
    }
    make_sim_line(acme)
    no_recipient = send(api, message="Hi")
    assert no_recipient.json() == {
        "error": "Either recipientEmail or recipientPhone is required (in body or on the lead "
        "when leadId is provided)."
    }


def test_an_unknown_lead_is_404_before_any_line_check(api, acme):
    """No line at all: the unknown lead is still what the answer says."""
    response = send(api, message="Hi", leadId="674a1b2c3d4e5f6789012345")
    assert response.status_code == 404
    assert response.json() == {"error": "Lead not found or access denied"}


# Cancel pending messages (cancel-for-lead.mdx)


CANCELLED = {
    "success": True,
    "cancelledCount": 3,
    "jobsRemovedFromQueue": 2,
    "leadId": "69b2c41d352a78479d2c623b",
    "messageIds": ["69dba0001111111111111111"],
}


@pytest.mark.parametrize(
    "example",
    [
        {"recipientPhone": "+14422646782"},
        {"recipientEmail": "john@example.com"},
        {"leadId": None},
    ],
)
def test_cancel_examples_answer_the_published_fields(api, acme, active_line, example):
    lead = lead_get_or_create(
        workspace=acme, data={"phone": "+14422646782", "email": "john@example.com"}
    )[0]
    ids = [send(api, message=f"Step {n}", leadId=lead.pk).json()["message"]["_id"] for n in "123"]
    body = {k: v or lead.pk for k, v in example.items()}
    response = api.post("/api/messages/cancel-for-lead", body, format="json")
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == set(CANCELLED)
    assert answer["success"] is True
    assert answer["cancelledCount"] == 3
    assert answer["jobsRemovedFromQueue"] == 3
    assert answer["leadId"] == lead.pk
    assert sorted(answer["messageIds"]) == sorted(ids)
    again = api.post("/api/messages/cancel-for-lead", body, format="json").json()
    # openapi.json's noPending example.
    assert again == {
        "success": True,
        "cancelledCount": 0,
        "jobsRemovedFromQueue": 0,
        "leadId": lead.pk,
        "messageIds": [],
    }


def test_cancel_errors_are_the_published_texts(api):
    empty = api.post("/api/messages/cancel-for-lead", {}, format="json")
    assert (empty.status_code, empty.json()) == (
        400,
        {"error": "Either leadId, recipientPhone, or recipientEmail is required"},
    )
    invalid = api.post("/api/messages/cancel-for-lead", {"leadId": "123"}, format="json")
    assert (invalid.status_code, invalid.json()) == (400, {"error": "Invalid leadId"})


# Replies (get-replies.mdx)


REPLY = {
    "leadId": "69b2c41d352a78479d2c623b",
    "messageId": "69b340dd6dae1d942ece4d09",
    "message": "Stop",
    "respondedAtUtc": "2026-03-12T22:40:29.174Z",
    "recipientPhone": "+919042956129",
    "recipientEmail": "goforbg@icloud.com",
    "name": "BG Real",
    "recentReplies": [],
    "parentMessages": [],
}


def test_replies_answer_the_published_shape_with_fifty_per_page(api, acme, lead):
    sent = Message.objects.create(
        workspace=acme,
        lead=lead,
        body="Here's your document. " + "x" * 300,
        recipient_phone=lead.phone,
        status="sent",
        sent_at=timezone.now(),
    )
    inbound_record(
        workspace=acme,
        address="+919042956129",
        text="Thanks for reaching out",
        channel="imessage",
        external_id=uuid.uuid4().hex,
    )
    for query in (
        "?recipientPhone=%2B919042956129&limit=10",
        f"?leadId={lead.pk}",
        "?recipientEmail=goforbg%40icloud.com",
        "",
    ):
        response = api.get(f"/api/replies{query}")
        assert response.status_code == 200, query
        body = response.json()
        assert set(body) == {"replies", "total", "page", "limit", "totalPages"}
        assert body["limit"] == (10 if "limit" in query else 50)
        assert (body["total"], body["page"], body["totalPages"]) == (1, 1, 1)
        [item] = body["replies"]
        assert set(item) == set(REPLY)
        assert (item["leadId"], item["message"], item["name"]) == (
            lead.pk,
            "Thanks for reaching out",
            "BG Real",
        )
        assert (item["recipientPhone"], item["recipientEmail"]) == (
            "+919042956129",
            "goforbg@icloud.com",
        )
        assert set(item["recentReplies"][0]) == {"messageId", "message", "receivedAtUtc"}
        [parent] = item["parentMessages"]
        assert set(parent) == {"messageId", "message", "sentAtUtc", "batchId", "stepIndex"}
        assert parent["messageId"] == sent.pk
        # "Message text (truncated to 200 chars)".
        assert parent["message"] == sent.body[:200]
        assert (parent["batchId"], parent["stepIndex"]) == (None, None)


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ("leadId=nope", 400, "Invalid leadId"),
        ("campaignId=nope", 400, "Invalid campaignId"),
        ("leadId=69b2c41d352a78479d2c623b", 404, "Lead not found or access denied"),
        ("campaignId=69ab444ac1feb77d7f46462f", 404, "Campaign not found"),
    ],
)
def test_replies_errors_are_the_published_texts(api, query, status, error):
    response = api.get(f"/api/replies?{query}")
    assert (response.status_code, response.json()) == (status, {"error": error})


def test_attachment_names_are_the_names_the_files_are_sent_under(
    api, line, sim, file_server, settings, django_capture_on_commit_callbacks
):
    """send-with-attachments.mdx's `attachmentNames`: display names in the order of
    `attachmentUrls`; the URL's file name where there is none."""
    settings.MESSAGING_ALLOW_PRIVATE_ATTACHMENT_URLS = True
    with django_capture_on_commit_callbacks(execute=True):
        response = send(
            api,
            recipientPhone="+14155550102",
            attachmentUrls=[f"{file_server}/files/q3.pdf", f"{file_server}/files/intro.mp4"],
            attachmentNames=["Q3 proposal"],
        )
    assert response.status_code == 201, response.json()
    assert response.json()["message"]["attachmentNames"] == ["Q3 proposal.pdf", "intro.mp4"]
    names = [
        attachment["transferName"]
        for item in sim.sent
        for attachment in item.get("attachments") or []
    ]
    assert names == ["Q3 proposal.pdf", "intro.mp4"]
    too_many = send(
        api,
        recipientPhone="+14155550102",
        attachmentUrls=["https://example.com/a.pdf"],
        attachmentNames=["a", "b"],
    )
    assert too_many.status_code == 400
    assert too_many.json()["error"].startswith("attachmentNames")
