"""POST /api/messages validation (the Send Message seed's error table), lead
resolution, listing, detail and cancel-for-lead. Nothing is dispatched here."""

import pytest

from leads.models import Lead, LeadList
from leads.services import lead_get_or_create
from lines.services import line_create
from messaging.models import DoNotContact, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def active_line(acme):
    return line_create(workspace=acme, server_url="http://127.0.0.1:9", relay_password="x")


def send(api, **body):
    return api.post("/api/messages", body, format="json")


# The seed's error rows, exact bodies


def test_it_rejects_an_empty_message(api, active_line):
    response = send(api, message="", recipientPhone="+14155550102")
    assert response.status_code == 400
    assert response.json() == {"error": "Message and attachmentUrls cannot both be empty"}


def test_it_rejects_an_empty_message_with_empty_attachments(api, active_line):
    response = send(api, message="  ", attachmentUrls=[], recipientPhone="+14155550102")
    assert response.json() == {"error": "Message and attachmentUrls cannot both be empty"}


def test_it_rejects_an_unknown_message_type(api, active_line):
    response = send(api, message="Hi", messageType="fax", recipientPhone="+14155550102")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid messageType. Must be email, sms, or imessage"}


def test_it_rejects_imessage_without_any_active_line(api):
    response = send(api, message="Hi", recipientPhone="+14155550102")
    assert response.status_code == 400
    assert response.json() == {
        "error": "No active lines in workspace. Add and activate a line, or provide fromLineId."
    }
    assert Message.objects.count() == 0


def test_it_rejects_a_message_with_no_recipient(api, active_line):
    response = send(api, message="Hi")
    assert response.status_code == 400
    assert response.json() == {
        "error": "Either recipientEmail or recipientPhone is required "
        "(in body or on the lead when leadId is provided)."
    }


def test_it_rejects_fallback_without_twilio(api, active_line):
    response = send(api, message="Hi", recipientPhone="+14155550102", sendFallbackSmsOnFailed=True)
    assert response.status_code == 400
    assert response.json()["code"] == "FALLBACK_NOT_CONFIGURED"
    assert set(response.json()) == {"error", "code"}


def test_it_rejects_an_unknown_lead(api, active_line):
    response = send(api, message="Hi", leadId="nope")
    assert response.status_code == 404
    assert response.json() == {"error": "Lead not found or access denied"}


def test_a_lead_of_another_workspace_looks_unknown(api, globex, active_line):
    lead, _ = lead_get_or_create(workspace=globex, data={"phone": "+14155550102"})
    response = send(api, message="Hi", leadId=lead.pk)
    assert response.status_code == 404
    assert response.json() == {"error": "Lead not found or access denied"}


def test_it_rejects_an_unknown_or_foreign_line(api, globex, active_line):
    foreign = line_create(workspace=globex, server_url="http://127.0.0.1:9")
    for line_id in ("nope", foreign.pk):
        response = send(api, message="Hi", recipientPhone="+14155550102", fromLineId=line_id)
        assert response.status_code == 404
        assert response.json() == {"error": "Line not found", "code": "NOT_FOUND"}


def test_it_needs_no_line_when_one_is_named(api, acme):
    line = line_create(
        workspace=acme, server_url="http://127.0.0.1:9", relay_password="x", is_active=False
    )
    response = send(api, message="Hi", recipientPhone="+14155550102", fromLineId=line.pk)
    assert response.status_code == 201
    assert response.json()["message"]["fromLineId"] == line.pk


def test_unauthenticated_callers_get_401(anon):
    response = anon.post("/api/messages", {"message": "Hi"}, format="json")
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}


def test_a_past_due_workspace_is_read_only(api, acme, active_line):
    acme.billing_status = "past_due"
    acme.save()
    response = send(api, message="Hi", recipientPhone="+14155550102")
    assert response.status_code == 402
    assert response.json() == {"error": "READ_ONLY", "code": "READ_ONLY", "reason": "past_due"}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "Invalid timezone or time window settings"),
        ({"sendWindowStart": "9:00", "sendWindowEnd": "17:00"}, "Invalid time format"),
        ({"sendWindowStart": "09:00", "sendWindowEnd": "24:00"}, "Invalid time format"),
        ({"sendWindowStart": "09:00"}, "sendWindowStart"),
        ({"allowedDaysOfWeek": [1, 7]}, "allowedDaysOfWeek"),
        ({"allowedDaysOfWeek": "weekdays"}, "allowedDaysOfWeek"),
        ({"scheduledDate": "tomorrow"}, "Invalid scheduledDate format"),
        ({"attachmentUrls": ["ftp://example.com/a.png"]}, "attachmentUrls"),
        ({"attachmentUrls": ["https://example.com/a.exe"]}, "attachmentUrls"),
        ({"attachmentUrls": [f"https://e.com/{n}.png" for n in "abc"]},
         "Maximum 2 attachments per message"),
        ({"attachmentUrls": "https://e.com/a.png"}, "attachmentUrls must be an array"),
        ({"recipientPhone": "12"}, "recipientPhone"),
    ],
)  # fmt: skip
def test_it_rejects_bad_scheduling_and_attachments(api, active_line, extra, field):
    body = {"message": "Hi", "recipientPhone": "+14155550102", **extra}
    response = send(api, **body)
    assert response.status_code == 400, response.json()
    assert response.json()["error"].startswith(field)
    assert Message.objects.count() == 0
    assert Lead.objects.count() == 0


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"sendFallbackSmsOnFailed": "false"}, "sendFallbackSmsOnFailed: must be true or false"),
        ({"sendFallbackSmsOnFailed": 1}, "sendFallbackSmsOnFailed: must be true or false"),
        ({"recipientName": 42}, "recipientName: must be a string"),
        ({"recipientEmail": ["d@example.com"]}, "recipientEmail: must be a string"),
        ({"timezone": 5}, "timezone: must be a string"),
        ({"subject": {"text": "Hi"}}, "subject: must be a string"),
        ({"leadId": True}, "leadId: must be a string"),
        ({"altPhone1": False}, "altPhone1: must be a string"),
        ({"batchId": "b" * 101}, "batchId: must be at most 100 characters"),
    ],
)  # fmt: skip
def test_it_rejects_fields_of_the_wrong_type(api, acme, active_line, twilio, extra, error):
    response = send(api, message="Hi", recipientPhone="+14155550102", **extra)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert Message.objects.count() == 0


def test_a_false_fallback_flag_is_false(api, acme, active_line):
    response = send(api, message="Hi", recipientPhone="+14155550102",
                    sendFallbackSmsOnFailed=False)  # fmt: skip
    assert response.status_code == 201, response.json()
    assert response.json()["message"]["sendFallbackSmsOnFailed"] is False


def test_numbers_are_accepted_for_phones_and_batch_ids(api, acme, active_line):
    response = send(api, message="Hi", recipientPhone=4155550102, altPhone1=4155550104, batchId=7)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["message"]["recipientPhone"], body["message"]["batchId"]) == ("+14155550102", "7")
    assert Lead.objects.get(pk=body["leadId"]).alt_phone1 == "+14155550104"


def test_it_refuses_a_do_not_contact_recipient(api, acme, active_line):
    DoNotContact.objects.create(workspace=acme, value="+14155550102", kind="phone")
    response = send(api, message="Hi", recipientPhone="(415) 555-0102")
    assert response.status_code == 400
    assert response.json()["code"] == "DO_NOT_CONTACT"
    assert Message.objects.count() == 0


# Success and lead resolution


def test_it_creates_a_pending_message_and_a_quick_sends_lead(api, acme, active_line):
    response = send(
        api,
        message="Hi {firstName}",
        recipientPhone="(415) 555-0102",
        recipientName="Dana Scully",
        altEmail1="dana@icloud.com",
        batchId="b-1",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    assert body["status"] == "pending"
    message = body["message"]
    assert message["status"] == "pending"
    assert message["message"] == "Hi {firstName}"
    assert message["messageType"] == "imessage"
    assert message["recipientPhone"] == "+14155550102"
    assert message["batchId"] == "b-1"
    assert message["workspaceId"] == acme.pk
    assert message["leadId"] == body["leadId"]
    assert message["createdAt"].endswith("Z")
    lead = Lead.objects.get(pk=body["leadId"])
    assert (lead.first_name, lead.last_name) == ("Dana", "Scully")
    assert lead.alt_email1 == "dana@icloud.com"
    assert (
        LeadList.objects.get(workspace=acme, name="Quick Sends").leads.filter(pk=lead.pk).exists()
    )


def test_a_national_number_is_read_in_the_leads_default_country(api, acme, active_line, settings):
    settings.LEADS_DEFAULT_COUNTRY_CODE = "+44"
    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "020 7946 0958"})
    assert lead.phone == "+442079460958"
    response = send(api, message="Hi", recipientPhone="020 7946 0958")
    assert response.status_code == 200, response.json()
    assert response.json()["leadId"] == lead.pk
    assert response.json()["message"]["recipientPhone"] == "+442079460958"
    cancelled = api.post(
        "/api/messages/cancel-for-lead", {"recipientPhone": "020 7946 0958"}, format="json"
    ).json()
    assert (cancelled["leadId"], cancelled["cancelledCount"]) == (lead.pk, 1)
    DoNotContact.objects.create(workspace=acme, value="+442079460958", kind="phone")
    blocked = send(api, message="Hi", recipientPhone="020 7946 0958")
    assert blocked.json()["code"] == "DO_NOT_CONTACT"


def test_it_links_an_existing_lead_and_merges_alt_fields(api, acme, active_line):
    lead, _ = lead_get_or_create(
        workspace=acme, data={"phone": "+14155550102", "firstName": "Dana"}
    )
    response = send(
        api, message="Hi", recipientPhone="415-555-0102", altPhone1="+14155550104",
        recipientName="Someone Else",
    )  # fmt: skip
    assert response.status_code == 200
    body = response.json()
    assert body["leadId"] == lead.pk
    assert body["duplicateOnly"] is True
    assert body["existingLeadIds"] == body["leadIds"] == [lead.pk]
    assert body["message"]["recipientName"] == "Someone Else"
    lead.refresh_from_db()
    assert lead.alt_phone1 == "+14155550104"
    assert lead.first_name == "Dana"
    assert Lead.objects.count() == 1


def test_it_matches_a_lead_by_an_alternate_identifier(api, acme, active_line):
    lead, _ = lead_get_or_create(
        workspace=acme, data={"phone": "+14155550102", "altEmail1": "dana@icloud.com"}
    )
    response = send(api, message="Hi", recipientEmail="DANA@icloud.com")
    assert response.json()["leadId"] == lead.pk


def test_with_lead_id_the_body_recipient_overrides_for_this_send(api, acme, active_line):
    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "+14155550102"})
    response = send(api, message="Hi", leadId=lead.pk, recipientPhone="+14155550104")
    assert response.status_code == 201
    assert response.json()["message"]["recipientPhone"] == "+14155550104"
    lead.refresh_from_db()
    assert lead.phone == "+14155550102"


def test_with_lead_id_alone_the_lead_address_is_used(api, acme, active_line):
    lead, _ = lead_get_or_create(
        workspace=acme, data={"phone": "+14155550102", "email": "d@icloud.com"}
    )
    response = send(api, message="Hi", leadId=lead.pk)
    assert response.json()["message"]["recipientPhone"] == "+14155550102"
    assert response.json()["message"]["recipientEmail"] == "d@icloud.com"


def test_a_future_scheduled_date_makes_it_scheduled(api, active_line):
    response = send(
        api,
        message="Later",
        recipientPhone="+14155550102",
        scheduledDate="2099-10-15T14:30:00Z",
        timezone="America/New_York",
        sendWindowStart="09:00",
        sendWindowEnd="17:00",
        allowedDaysOfWeek=[1, 2, 3, 4, 5],
    )
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "scheduled"
    assert body["message"]["scheduledDate"] == "2099-10-15T14:30:00.000Z"
    assert body["message"]["settings"] == {
        "timezone": "America/New_York",
        "sendWindowStart": "09:00",
        "sendWindowEnd": "17:00",
        "allowedDaysOfWeek": [1, 2, 3, 4, 5],
    }


def test_sms_and_email_need_no_line(api, acme, twilio):
    sms = send(api, message="Hi", messageType="sms", recipientPhone="+14155550102")
    assert sms.status_code == 201, sms.json()
    email = send(api, message="Hi", messageType="email", recipientEmail="d@example.com")
    assert email.status_code == 201
    assert "recipientPhone" not in email.json()["message"]


def test_an_email_needs_an_email_address(api, acme):
    response = send(api, message="Hi", messageType="email", recipientPhone="+14155550102")
    assert response.status_code == 400
    assert response.json()["error"].startswith("recipientEmail")


def test_the_idempotency_key_replays_the_first_response(api, active_line):
    body = {"message": "Hi", "recipientPhone": "+14155550102"}
    first = api.post("/api/messages", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = api.post("/api/messages", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert Message.objects.count() == 1


def test_it_never_sends_inside_the_request(api, active_line):
    send(api, message="Hi", recipientPhone="+14155550102")
    assert Message.objects.get().status == "pending"


# Reading and cancelling


def test_list_filters_and_paginates(api, globex_api, acme, active_line):
    for index in range(3):
        send(api, message=f"Hi {index}", recipientPhone="+14155550102", batchId="b")
    send(api, message="Other", recipientPhone="+14155550104")
    page = api.get("/api/messages", {"batchId": "b", "limit": 2}).json()
    assert page["pagination"] == {"page": 1, "limit": 2, "totalCount": 3, "totalPages": 2}
    assert [m["message"] for m in page["messages"]] == ["Hi 2", "Hi 1"]
    assert api.get("/api/messages", {"status": "sent"}).json()["messages"] == []
    assert globex_api.get("/api/messages").json()["pagination"]["totalCount"] == 0


def test_detail_of_a_foreign_message_is_404(api, globex_api, active_line):
    message_id = send(api, message="Hi", recipientPhone="+14155550102").json()["message"]["_id"]
    assert api.get(f"/api/messages/{message_id}").status_code == 200
    response = globex_api.get(f"/api/messages/{message_id}")
    assert response.status_code == 404
    assert response.json()["error"] == "Message not found"


def test_cancel_for_lead_cancels_waiting_messages(api, acme, active_line):
    first = send(api, message="One", recipientPhone="+14155550102").json()
    send(api, message="Two", recipientPhone="+14155550102")
    send(api, message="Else", recipientPhone="+14155550104")
    response = api.post("/api/messages/cancel-for-lead", {"leadId": first["leadId"]}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["cancelledCount"] == 2
    assert body["leadId"] == first["leadId"]
    assert sorted(body["messageIds"]) == sorted(
        Message.objects.filter(status="cancelled").values_list("pk", flat=True)
    )
    by_phone = api.post(
        "/api/messages/cancel-for-lead", {"recipientPhone": "415 555 0104"}, format="json"
    ).json()
    assert by_phone["cancelledCount"] == 1


def test_cancel_for_an_unknown_lead_is_404(api):
    response = api.post("/api/messages/cancel-for-lead", {"leadId": "0" * 24}, format="json")
    assert response.status_code == 404
    assert response.json() == {"error": "Lead not found or access denied"}


def test_cancel_for_a_malformed_lead_id_is_the_published_400(api):
    response = api.post("/api/messages/cancel-for-lead", {"leadId": "nope"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid leadId"}
