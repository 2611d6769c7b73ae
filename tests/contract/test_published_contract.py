"""Every published operation we serve answers as the published document says.

For each (method, path, status) of an in-scope operation, realistic requests go through
Django's test client with a real workspace, API key, line (on the relay simulator),
leads, a campaign, a webhook endpoint and a reply; each response must have that
status, a documented content type and a body that validates against the published
schema (published.py). Where the published document gives the exact error body as an
example, the body must say exactly that.

KNOWN_MISMATCHES lists what does not match yet; those cases are strict xfails, so one
that starts to pass fails until its line is removed.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone

from tests.contract import published
from tests.messaging.conftest import WebhookReceiver

# The operations the contract covers, where the published document defines them.
IN_SCOPE = {
    ("POST", "/api/messages"),
    ("POST", "/api/messages/cancel-for-lead"),
    ("POST", "/api/leads"),
    ("GET", "/api/leads"),
    ("DELETE", "/api/leads"),
    ("GET", "/api/leads/check-availability"),
    ("POST", "/api/leads/check-availability"),
    ("GET", "/api/check-availability"),
    ("POST", "/api/check-availability"),
    ("POST", "/api/check-availability-rr"),
    ("POST", "/api/campaigns"),
    ("POST", "/api/campaigns/{id}/leads"),
    ("POST", "/api/campaigns/{id}/enroll"),
    ("GET", "/api/replies"),
    ("GET", "/api/lines/by-user"),
    ("GET", "/api/lines/check-availability"),
    ("GET", "/api/health-check"),
    ("GET", "/api/lines/spam-monitor"),
    ("GET", "/api/webhooks"),
    ("POST", "/api/webhooks"),
    ("GET", "/api/webhooks/{id}"),
    ("POST", "/api/webhooks/{id}"),
    ("PATCH", "/api/webhooks/{id}"),
    ("DELETE", "/api/webhooks/{id}"),
    ("POST", "/api/webhooks/{id}/health-check"),
    ("GET", "/api/lists"),
    ("POST", "/api/lists"),
    ("DELETE", "/api/lists"),
    ("GET", "/api/dnc"),
    ("POST", "/api/dnc"),
    ("DELETE", "/api/dnc"),
}
COVERED = IN_SCOPE & published.published_operations()

# (method, path, status) -> what differs today. Each is a strict xfail.
KNOWN_MISMATCHES: dict[tuple[str, str, int], str] = {}

# Fields of published examples that our answer leaves out on purpose, by operation
# (see the README, "Compatibility with the published API"). POST /api/messages sends
# nothing during the request: the message is pending, no line is chosen yet and it has
# no sentAt, where the published examples show a message sent at once.
NOT_SERVED: dict[tuple[str, str], set[str]] = {
    ("POST", "/api/messages"): {"message/fromLineId", "message/sentAt"},
}

UNKNOWN_ID = "0" * 24  # well formed, belongs to nothing
STEPS = [
    {"message": "Hi {firstName|there}", "delay": 0, "delayUnit": "minutes"},
    {"message": "Following up", "delay": 1, "delayUnit": "days"},
]


class World:
    """The data a customer has once they have set up: built on first use, so each
    case pays only for what it touches."""

    def __init__(self, request, acme, globex):
        self._request = request
        self.workspace = acme
        self.globex = globex
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {acme.raw_key}")
        self.anonymous = Client()
        self.wrong_key = Client(HTTP_AUTHORIZATION="Bearer tuco_sk_not-a-key")

    def call(self, method: str, url: str, body: Any = None, *, client=None, raw=None):
        client = client or self.client
        if raw is not None:
            return client.generic(method, url, raw, content_type="application/json")
        if body is None:
            return client.generic(method, url)
        return client.generic(method, url, json.dumps(body), content_type="application/json")

    def get(self, url, **kwargs):
        return self.call("GET", url, **kwargs)

    def post(self, url, body=None, **kwargs):
        return self.call("POST", url, body, **kwargs)

    def patch(self, url, body=None, **kwargs):
        return self.call("PATCH", url, body, **kwargs)

    def delete(self, url, body=None, **kwargs):
        return self.call("DELETE", url, body, **kwargs)

    def having(self, *names: str) -> "World":
        """This world once the named objects exist (they are made on first use)."""
        for name in names:
            getattr(self, name)
        return self

    def past_due(self) -> "World":
        self.workspace.billing_status = "past_due"
        self.workspace.save(update_fields=["billing_status"])
        return self

    @cached_property
    def line(self):
        make_line = self._request.getfixturevalue("make_line")
        return make_line(
            self.workspace, phone="+14155550100", first_name="Ava", contact_gap_seconds=0
        )

    def _lead(self, **fields) -> dict:
        self.line  # noqa: B018 - leads are checked on upload, through a line
        response = self.post("/api/leads", {"leads": [fields], "source": "api"})
        assert response.status_code == 201, response.content
        return response.json()

    @cached_property
    def lead_upload(self) -> dict:
        return self._lead(
            firstName="Ada", lastName="Lovelace", phone="+14155550102", email="ada@example.com"
        )

    @cached_property
    def lead_id(self) -> str:
        return self.lead_upload["leadIds"][0]

    @cached_property
    def list_id(self) -> str:
        return self.lead_upload["listId"]

    @cached_property
    def campaign_id(self) -> str:
        body = {"name": "Spring", "steps": STEPS, "lineIds": [self.line.pk]}
        response = self.post("/api/campaigns", body)
        assert response.status_code == 201, response.content
        return response.json()["campaign"]["_id"]

    @cached_property
    def scheduled_message_id(self) -> str:
        body = {"message": "Later", "leadId": self.lead_id, "scheduledDate": "2099-01-01T10:00:00Z"}
        response = self.post("/api/messages", body)
        assert response.status_code in (200, 201), response.content
        return response.json()["message"]["_id"]

    @cached_property
    def reply_id(self) -> str:
        from messaging.inbound import inbound_record
        from messaging.models import Message

        Message.objects.create(
            workspace=self.workspace,
            lead_id=self.lead_id,
            line=self.line,
            body="Hi Ada",
            recipient_phone="+14155550102",
            status="sent",
            sent_at=timezone.now(),
        )
        inbound = inbound_record(
            workspace=self.workspace,
            address="+14155550102",
            text="Sounds good",
            channel="imessage",
            external_id="reply-1",
            line=self.line,
        )
        return inbound.pk

    @cached_property
    def receiver(self) -> WebhookReceiver:
        self._request.getfixturevalue("settings").WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
        server = WebhookReceiver()
        self._request.addfinalizer(server.close)
        return server

    @cached_property
    def webhook_id(self) -> str:
        body = {"url": self.receiver.url, "events": ["message.sent"], "name": "CRM"}
        response = self.post("/api/webhooks", body)
        assert response.status_code == 201, response.content
        return response.json()["id"]

    @cached_property
    def globex_client(self) -> Client:
        return Client(HTTP_AUTHORIZATION=f"Bearer {self.globex.raw_key}")


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int
    name: str
    call: Callable[[World], Any]
    # The published example whose `error` (and `code`) the body must repeat exactly.
    example: str | None = None


C = Case
MSG, LEADS, AVAIL = "/api/messages", "/api/leads", "/api/leads/check-availability"
CANCEL, ENROLL, REPLIES = (
    "/api/messages/cancel-for-lead",
    "/api/campaigns/{id}/leads",
    "/api/replies",
)
HOOKS, HOOK, HOOK_CHECK = "/api/webhooks", "/api/webhooks/{id}", "/api/webhooks/{id}/health-check"


def _unauthorized(method: str, path: str, url: Callable[[World], str], body=None) -> list[Case]:
    return [
        C(
            method,
            path,
            401,
            "no API key",
            lambda w: w.call(method, url(w), body, client=w.anonymous),
            "example",
        ),
        C(
            method,
            path,
            401,
            "an unknown API key",
            lambda w: w.call(method, url(w), body, client=w.wrong_key),
            "example",
        ),
    ]


def _hook(w: World, suffix: str = "") -> str:
    return f"/api/webhooks/{w.webhook_id}{suffix}"


CASES: list[Case] = [
    # POST /api/messages
    C(
        "POST",
        MSG,
        201,
        "a message to a lead by leadId",
        lambda w: w.post(MSG, {"message": "Hi {firstName|there}", "leadId": w.lead_id}),
        "minimalSent",
    ),
    C(
        "POST",
        MSG,
        201,
        "a message to a new phone number",
        lambda w: w.having("line").post(
            MSG, {"message": "Hi", "recipientPhone": "+14155550104", "recipientName": "Bo"}
        ),
    ),
    C(
        "POST",
        MSG,
        201,
        "a scheduled email",
        lambda w: w.having("line").post(
            MSG,
            {
                "message": "Hi",
                "messageType": "email",
                "recipientEmail": "cy@example.com",
                "scheduledDate": "2099-01-01T10:00:00Z",
            },
        ),
    ),
    C(
        "POST",
        MSG,
        200,
        "a message to the phone of an existing lead",
        lambda w: w.having("lead_id").post(
            MSG, {"message": "Hi", "recipientPhone": "+14155550102"}
        ),
        "example",
    ),
    C(
        "POST",
        MSG,
        400,
        "a body that is not an object",
        lambda w: w.post(MSG, ["Hi"]),
        "bodyNotObject",
    ),
    C(
        "POST",
        MSG,
        400,
        "a body that is not JSON",
        lambda w: w.post(MSG, raw=b"{not json"),
        "invalidJson",
    ),
    C(
        "POST",
        MSG,
        400,
        "no message and no attachments",
        lambda w: w.post(MSG, {"leadId": w.lead_id}),
        "empty",
    ),
    C(
        "POST",
        MSG,
        400,
        "an unknown messageType",
        lambda w: w.post(MSG, {"message": "Hi", "leadId": w.lead_id, "messageType": "fax"}),
        "invalidType",
    ),
    C(
        "POST",
        MSG,
        400,
        "attachmentUrls not an array",
        lambda w: w.post(
            MSG,
            {"message": "Hi", "leadId": w.lead_id, "attachmentUrls": "https://example.com/a.png"},
        ),
        "attachmentUrlsNotArray",
    ),
    C(
        "POST",
        MSG,
        400,
        "three attachments",
        lambda w: w.post(
            MSG,
            {
                "message": "Hi",
                "leadId": w.lead_id,
                "attachmentUrls": [f"https://example.com/{n}.png" for n in range(3)],
            },
        ),
        "maxAttachments",
    ),
    C(
        "POST",
        MSG,
        400,
        "no active line",
        lambda w: w.post(
            MSG, {"message": "Hi", "recipientPhone": "+14155550106"}, client=w.globex_client
        ),
        "noLines",
    ),
    C(
        "POST",
        MSG,
        400,
        "a scheduledDate that is not a date",
        lambda w: w.post(
            MSG, {"message": "Hi", "leadId": w.lead_id, "scheduledDate": "next tuesday"}
        ),
        "invalidScheduledDate",
    ),
    C(
        "POST",
        MSG,
        400,
        "a send window not in HH:mm",
        lambda w: w.post(
            MSG,
            {
                "message": "Hi",
                "leadId": w.lead_id,
                "sendWindowStart": "9am",
                "sendWindowEnd": "17:00",
            },
        ),
        "invalidTimeWindow",
    ),
    C(
        "POST",
        MSG,
        400,
        "an unknown timezone",
        lambda w: w.post(MSG, {"message": "Hi", "leadId": w.lead_id, "timezone": "Mars/Olympus"}),
        "invalidTimezone",
    ),
    C(
        "POST",
        MSG,
        400,
        "no recipient",
        lambda w: w.having("line").post(MSG, {"message": "Hi"}),
        "noRecipient",
    ),
    C(
        "POST",
        MSG,
        400,
        "fallback asked for, not configured",
        lambda w: w.post(
            MSG, {"message": "Hi", "leadId": w.lead_id, "sendFallbackSmsOnFailed": True}
        ),
        "fallback",
    ),
    *_unauthorized("POST", MSG, lambda w: MSG, {"message": "Hi", "recipientPhone": "+14155550102"}),
    C(
        "POST",
        MSG,
        402,
        "a past-due workspace",
        lambda w: w.having("lead_id").past_due().post(MSG, {"message": "Hi", "leadId": w.lead_id}),
        "example",
    ),
    C(
        "POST",
        MSG,
        404,
        "an unknown leadId",
        lambda w: w.having("line").post(MSG, {"message": "Hi", "leadId": UNKNOWN_ID}),
        "example",
    ),
    # POST /api/messages/cancel-for-lead
    C(
        "POST",
        CANCEL,
        200,
        "by leadId, one message waiting",
        lambda w: w.having("scheduled_message_id").post(CANCEL, {"leadId": w.lead_id}),
        "cancelled",
    ),
    C(
        "POST",
        CANCEL,
        200,
        "by phone, nothing waiting",
        lambda w: w.having("lead_id").post(CANCEL, {"recipientPhone": "+14155550102"}),
    ),
    C(
        "POST",
        CANCEL,
        200,
        "by an email no lead has",
        lambda w: w.post(CANCEL, {"recipientEmail": "nobody@example.com"}),
    ),
    C("POST", CANCEL, 400, "no identifier", lambda w: w.post(CANCEL, {}), "noIdentifier"),
    C(
        "POST",
        CANCEL,
        400,
        "a malformed leadId",
        lambda w: w.post(CANCEL, {"leadId": "not-an-id"}),
        "invalidLeadId",
    ),
    *_unauthorized("POST", CANCEL, lambda w: CANCEL, {"recipientPhone": "+14155550102"}),
    # POST /api/leads
    C(
        "POST",
        LEADS,
        201,
        "one new lead",
        lambda w: w.having("line").post(
            LEADS,
            {
                "leads": [{"firstName": "Bo", "phone": "(415) 555-0108"}],
                "defaultCountryCode": "+1",
            },
        ),
        "example",
    ),
    C(
        "POST",
        LEADS,
        201,
        "two leads into a list",
        lambda w: w.post(
            LEADS,
            {
                "leads": [
                    {"firstName": "Cy", "email": "cy@example.com"},
                    {"firstName": "Di", "phone": "+14155550110"},
                ],
                "listId": w.list_id,
                "source": "api",
            },
        ),
    ),
    C(
        "POST",
        LEADS,
        200,
        "only a duplicate",
        lambda w: w.post(
            LEADS,
            {
                "leads": [
                    {
                        "firstName": "Ada",
                        "lastName": "Lovelace",
                        "email": "ada@example.com",
                        "phone": "+14155550102",
                    }
                ],
                "listId": w.list_id,
            },
        ),
        "example",
    ),
    *_unauthorized(
        "POST", LEADS, lambda w: LEADS, {"leads": [{"firstName": "Bo", "phone": "+14155550108"}]}
    ),
    C(
        "POST",
        LEADS,
        402,
        "a past-due workspace",
        lambda w: w.past_due().post(
            LEADS, {"leads": [{"firstName": "Bo", "phone": "+14155550108"}]}
        ),
        "example",
    ),
    C(
        "POST",
        LEADS,
        404,
        "an unknown listId",
        lambda w: w.post(
            LEADS, {"leads": [{"firstName": "Bo", "phone": "+14155550108"}], "listId": UNKNOWN_ID}
        ),
        "example",
    ),
    # GET /api/leads
    C(
        "GET",
        LEADS,
        200,
        "a page of leads",
        lambda w: w.having("lead_id").get(f"{LEADS}?page=1&limit=10"),
    ),
    C(
        "GET",
        LEADS,
        200,
        "a search in a list",
        lambda w: w.get(f"{LEADS}?search=ada&listId={w.list_id}"),
    ),
    C("GET", LEADS, 200, "one lead by id", lambda w: w.get(f"{LEADS}?id={w.lead_id}")),
    C(
        "GET",
        LEADS,
        400,
        "a malformed lead id",
        lambda w: w.get(f"{LEADS}?id=not-an-id"),
        "invalidLeadId",
    ),
    C(
        "GET",
        LEADS,
        404,
        "an unknown lead id",
        lambda w: w.get(f"{LEADS}?id={UNKNOWN_ID}"),
        "example",
    ),
    *_unauthorized("GET", LEADS, lambda w: LEADS),
    # DELETE /api/leads
    C("DELETE", LEADS, 200, "one lead", lambda w: w.delete(LEADS, {"ids": [w.lead_id]})),
    C("DELETE", LEADS, 400, "no ids", lambda w: w.delete(LEADS, {}), "noIds"),
    C(
        "DELETE",
        LEADS,
        400,
        "a malformed id",
        lambda w: w.delete(LEADS, {"ids": ["not-an-id"]}),
        "invalidId",
    ),
    *_unauthorized("DELETE", LEADS, lambda w: LEADS, {"ids": [UNKNOWN_ID]}),
    # GET /api/leads/check-availability
    C("GET", AVAIL, 200, "a lead on iMessage", lambda w: w.get(f"{AVAIL}?id={w.lead_id}")),
    C(
        "GET",
        AVAIL,
        200,
        "a lead not on iMessage",
        lambda w: w.get(
            f"{AVAIL}?id={w._lead(firstName='Ed', phone='+14155550111')['leadIds'][0]}"
        ),
    ),
    C("GET", AVAIL, 400, "no id", lambda w: w.get(AVAIL), "example"),
    C(
        "GET",
        AVAIL,
        404,
        "an unknown lead",
        lambda w: w.having("line").get(f"{AVAIL}?id={UNKNOWN_ID}"),
        "example",
    ),
    C(
        "GET",
        AVAIL,
        429,
        "every line out of daily checks",
        lambda w: _exhausted(w, lambda: w.get(f"{AVAIL}?id={w.lead_id}&force=true")),
        "dailyQuota",
    ),
    *_unauthorized("GET", AVAIL, lambda w: f"{AVAIL}?id={UNKNOWN_ID}"),
    # POST /api/leads/check-availability
    C(
        "POST",
        AVAIL,
        200,
        "one address",
        lambda w: w.having("line").post(AVAIL, {"address": "+14155550112"}),
        "single",
    ),
    C("POST", AVAIL, 200, "a few leads", lambda w: w.post(AVAIL, {"leadIds": [w.lead_id]}), "bulk"),
    C(
        "POST",
        AVAIL,
        200,
        "a list in the background",
        lambda w: w.post(AVAIL, {"listId": _big_list(w)}),
    ),
    C(
        "POST",
        AVAIL,
        404,
        "no leads to check",
        lambda w: w.having("line").post(AVAIL, {"leadIds": [UNKNOWN_ID]}),
        "example",
    ),
    C(
        "POST",
        AVAIL,
        429,
        "every line out of daily checks",
        lambda w: _exhausted(w, lambda: w.post(AVAIL, {"address": "+14155550112"})),
        "dailyQuota",
    ),
    *_unauthorized("POST", AVAIL, lambda w: AVAIL, {"address": "+14155550112"}),
    # POST /api/campaigns/{id}/leads
    C(
        "POST",
        ENROLL,
        201,
        "an existing lead",
        lambda w: w.post(f"/api/campaigns/{w.campaign_id}/leads", {"leadId": w.lead_id}),
        "example",
    ),
    C(
        "POST",
        ENROLL,
        201,
        "a new lead from its fields",
        lambda w: w.post(
            f"/api/campaigns/{w.campaign_id}/leads",
            {"lead": {"firstName": "Fay", "phone": "+14155550114"}},
        ),
    ),
    C(
        "POST",
        ENROLL,
        200,
        "a lead already enrolled",
        lambda w: _twice(
            lambda: w.post(f"/api/campaigns/{w.campaign_id}/leads", {"leadId": w.lead_id})
        ),
    ),
    C(
        "POST",
        ENROLL,
        400,
        "neither leadId nor lead",
        lambda w: w.post(f"/api/campaigns/{w.campaign_id}/leads", {}),
        "eitherRequired",
    ),
    C(
        "POST",
        ENROLL,
        400,
        "a lead without firstName",
        lambda w: w.post(
            f"/api/campaigns/{w.campaign_id}/leads", {"lead": {"phone": "+14155550114"}}
        ),
        "firstNameRequired",
    ),
    C(
        "POST",
        ENROLL,
        400,
        "a lead without phone or email",
        lambda w: w.post(f"/api/campaigns/{w.campaign_id}/leads", {"lead": {"firstName": "Fay"}}),
        "emailOrPhoneRequired",
    ),
    C(
        "POST",
        ENROLL,
        404,
        "an unknown campaign",
        lambda w: w.post(f"/api/campaigns/{UNKNOWN_ID}/leads", {"leadId": w.lead_id}),
        "campaignNotFound",
    ),
    C(
        "POST",
        ENROLL,
        404,
        "an unknown lead",
        lambda w: w.post(f"/api/campaigns/{w.campaign_id}/leads", {"leadId": UNKNOWN_ID}),
        "leadNotFound",
    ),
    *_unauthorized(
        "POST", ENROLL, lambda w: f"/api/campaigns/{UNKNOWN_ID}/leads", {"leadId": UNKNOWN_ID}
    ),
    # GET /api/replies
    C(
        "GET",
        REPLIES,
        200,
        "the replies of a workspace",
        lambda w: w.having("reply_id").get(REPLIES),
    ),
    C(
        "GET",
        REPLIES,
        200,
        "the replies of one lead",
        lambda w: w.having("reply_id").get(f"{REPLIES}?leadId={w.lead_id}&page=1&limit=5"),
    ),
    C(
        "GET",
        REPLIES,
        200,
        "the replies in a campaign",
        lambda w: w.get(f"{REPLIES}?campaignId={w.campaign_id}"),
    ),
    C(
        "GET",
        REPLIES,
        400,
        "a malformed leadId",
        lambda w: w.get(f"{REPLIES}?leadId=nope"),
        "invalidLeadId",
    ),
    C(
        "GET",
        REPLIES,
        400,
        "a malformed campaignId",
        lambda w: w.get(f"{REPLIES}?campaignId=nope"),
        "invalidCampaignId",
    ),
    C(
        "GET",
        REPLIES,
        404,
        "an unknown lead",
        lambda w: w.get(f"{REPLIES}?leadId={UNKNOWN_ID}"),
        "leadNotFound",
    ),
    C(
        "GET",
        REPLIES,
        404,
        "an unknown campaign",
        lambda w: w.get(f"{REPLIES}?campaignId={UNKNOWN_ID}"),
        "campaignNotFound",
    ),
    *_unauthorized("GET", REPLIES, lambda w: REPLIES),
    # GET /api/lines/by-user
    C(
        "GET",
        "/api/lines/by-user",
        200,
        "a workspace with a checked line",
        lambda w: _checked(w, lambda: w.get("/api/lines/by-user")),
        "example",
    ),
    C(
        "GET",
        "/api/lines/by-user",
        200,
        "a workspace without lines",
        lambda w: w.get("/api/lines/by-user"),
    ),
    C(
        "GET",
        "/api/lines/by-user",
        200,
        "a line never checked yet",
        lambda w: w.having("line").get("/api/lines/by-user"),
    ),
    *_unauthorized("GET", "/api/lines/by-user", lambda w: "/api/lines/by-user"),
    # /api/webhooks
    C("GET", HOOKS, 200, "one endpoint", lambda w: w.having("webhook_id").get(HOOKS), "example"),
    C("GET", HOOKS, 200, "no endpoints", lambda w: w.get(HOOKS)),
    *_unauthorized("GET", HOOKS, lambda w: HOOKS),
    C(
        "POST",
        HOOKS,
        201,
        "an endpoint",
        lambda w: w.post(
            HOOKS,
            {
                "url": w.receiver.url,
                "events": ["message.sent", "message.reply"],
                "name": "CRM",
                "description": "Replies to the CRM",
            },
        ),
        "example",
    ),
    C(
        "POST",
        HOOKS,
        400,
        "no url",
        lambda w: w.post(HOOKS, {"events": ["message.sent"], "name": "CRM"}),
    ),
    C(
        "POST",
        HOOKS,
        400,
        "an unknown event",
        lambda w: w.post(
            HOOKS, {"url": "https://example.com/h", "events": ["lead.married"], "name": "CRM"}
        ),
    ),
    C(
        "POST",
        HOOKS,
        400,
        "no events",
        lambda w: w.post(HOOKS, {"url": "https://example.com/h", "events": [], "name": "CRM"}),
    ),
    *_unauthorized(
        "POST",
        HOOKS,
        lambda w: HOOKS,
        {"url": "https://example.com/h", "events": ["message.sent"], "name": "CRM"},
    ),
    C(
        "POST",
        HOOKS,
        402,
        "a past-due workspace",
        lambda w: w.past_due().post(
            HOOKS, {"url": "https://example.com/h", "events": ["message.sent"], "name": "CRM"}
        ),
    ),
    C("GET", HOOK, 200, "an endpoint", lambda w: w.get(_hook(w)), "example"),
    C("GET", HOOK, 404, "an unknown endpoint", lambda w: w.get(f"/api/webhooks/{UNKNOWN_ID}")),
    C(
        "GET",
        HOOK,
        404,
        "another workspace's endpoint",
        lambda w: w.get(_hook(w), client=w.globex_client),
    ),
    *_unauthorized("GET", HOOK, lambda w: f"/api/webhooks/{UNKNOWN_ID}"),
    C(
        "PATCH",
        HOOK,
        200,
        "new events and paused",
        lambda w: w.patch(_hook(w), {"events": ["message.failed"], "isActive": False}),
        "example",
    ),
    C(
        "PATCH",
        HOOK,
        400,
        "a url that is not a URL",
        lambda w: w.patch(_hook(w), {"url": "not a url"}),
    ),
    C("PATCH", HOOK, 400, "no events", lambda w: w.patch(_hook(w), {"events": []})),
    C(
        "PATCH",
        HOOK,
        404,
        "an unknown endpoint",
        lambda w: w.patch(f"/api/webhooks/{UNKNOWN_ID}", {"name": "X"}),
    ),
    *_unauthorized("PATCH", HOOK, lambda w: f"/api/webhooks/{UNKNOWN_ID}", {"name": "X"}),
    C(
        "PATCH",
        HOOK,
        402,
        "a past-due workspace",
        lambda w: w.having("webhook_id").past_due().patch(_hook(w), {"name": "X"}),
    ),
    C("DELETE", HOOK, 200, "an endpoint", lambda w: w.delete(_hook(w)), "example"),
    C(
        "DELETE",
        HOOK,
        404,
        "an unknown endpoint",
        lambda w: w.delete(f"/api/webhooks/{UNKNOWN_ID}"),
    ),
    *_unauthorized("DELETE", HOOK, lambda w: f"/api/webhooks/{UNKNOWN_ID}"),
    C(
        "DELETE",
        HOOK,
        402,
        "a past-due workspace",
        lambda w: w.having("webhook_id").past_due().delete(_hook(w)),
    ),
    C(
        "POST",
        HOOK_CHECK,
        200,
        "an endpoint that answers 200",
        lambda w: w.post(_hook(w, "/health-check")),
        "success",
    ),
    C(
        "POST",
        HOOK_CHECK,
        200,
        "an endpoint that answers 500",
        lambda w: _failing_receiver(w, lambda: w.post(_hook(w, "/health-check"))),
        "failure",
    ),
    C(
        "POST",
        HOOK_CHECK,
        404,
        "an unknown endpoint",
        lambda w: w.post(f"/api/webhooks/{UNKNOWN_ID}/health-check"),
    ),
    *_unauthorized("POST", HOOK_CHECK, lambda w: f"/api/webhooks/{UNKNOWN_ID}/health-check"),
]


def _twice(request):
    first = request()
    assert first.status_code == 201, first.content
    return request()


def _checked(w: World, request):
    from lines.services import line_health_check

    line_health_check(line=w.line)
    return request()


def _exhausted(w: World, request):
    w.line.daily_availability_checks_limit = 0
    w.line.save(update_fields=["daily_availability_checks_limit"])
    return request()


def _big_list(w: World) -> str:
    leads = [{"firstName": f"L{n}", "phone": f"+1415555{n:04d}"} for n in range(200, 212)]
    w.line  # noqa: B018
    response = w.post(LEADS, {"leads": leads, "source": "api"})
    assert response.status_code == 201, response.content
    return response.json()["listId"]


def _failing_receiver(w: World, request):
    w.webhook_id  # noqa: B018
    w.receiver.status = 500
    return request()


def _by_key() -> dict[tuple[str, str, int], list[Case]]:
    found: dict[tuple[str, str, int], list[Case]] = {}
    for case in CASES:
        found.setdefault((case.method, case.path, case.status), []).append(case)
    return found


BY_KEY = _by_key()


def _param(key):
    method, path, status = key
    marks = []
    if key in KNOWN_MISMATCHES:
        marks.append(
            pytest.mark.xfail(strict=True, raises=AssertionError, reason=KNOWN_MISMATCHES[key])
        )
    return pytest.param(key, id=f"{method} {path} {status}", marks=marks)


@pytest.fixture
def world(request, acme, globex, settings):
    settings.RATE_LIMITS_ENABLED = False
    return World(request, acme, globex)


def _example_problems(case: Case, response) -> list[str]:
    if case.example is None:
        return []
    want = published.example(case.method, case.path, case.status, case.example)
    try:
        got = response.json()
    except ValueError:
        return []  # reported by the schema check
    label = f"{case.method} {case.path} -> {case.status}"
    if case.status >= 400:
        return [
            f"{label}: {field} {got.get(field)!r} is not the published {want[field]!r}"
            f" (example {case.example!r})"
            for field in ("error", "code", "reason")
            if field in want and got.get(field) != want[field]
        ]
    return [
        f"{label}: field {path} of the published example {case.example!r} is missing"
        for path in _missing_fields(want, got)
        if path not in NOT_SERVED.get((case.method, case.path), set())
    ]


def _missing_fields(want, got, prefix="") -> list[str]:
    """The fields of a published example that a body lacks (objects recursively, and
    the first item of each list)."""
    if isinstance(want, list) and want and isinstance(got, list) and got:
        return _missing_fields(want[0], got[0], f"{prefix}0/")
    if not isinstance(want, dict) or not isinstance(got, dict):
        return []
    missing = []
    for name, value in want.items():
        if name not in got:
            missing.append(f"{prefix}{name}")
        else:
            missing += _missing_fields(value, got[name], f"{prefix}{name}/")
    return missing


@pytest.mark.parametrize("key", [_param(key) for key in BY_KEY])
def test_published_operation(key, world, django_capture_on_commit_callbacks):
    found = []
    for case in BY_KEY[key]:
        with django_capture_on_commit_callbacks(execute=True):
            response = case.call(world)
        if response.status_code != case.status:
            found.append(
                f"[{case.name}] {case.method} {case.path} -> {case.status}:"
                f" answered {response.status_code} {response.content[:300]!r}"
            )
            continue
        case_problems = published.problems(case.method, case.path, response)
        case_problems += _example_problems(case, response)
        found += [f"[{case.name}] {problem}" for problem in case_problems]
    assert not found, "\n".join(found)


def test_every_covered_operation_has_a_success_and_an_unauthorized_case():
    for method, path in COVERED:
        statuses = {status for (m, p, status) in BY_KEY if (m, p) == (method, path)}
        assert any(200 <= s < 300 for s in statuses), f"{method} {path}: no success case"
        assert 401 in statuses, f"{method} {path}: no 401 case"


def test_cases_test_only_covered_operations_and_documented_statuses():
    for method, path, status in BY_KEY:
        assert (method, path) in COVERED, f"{method} {path} is not an in-scope published operation"
        assert status in published.documented_statuses(method, path), (method, path, status)


def test_known_mismatches_name_real_cases():
    assert set(KNOWN_MISMATCHES) <= set(BY_KEY)


def test_the_check_names_operation_status_and_schema_path():
    body = '{"savedCount": "one", "leadIds": [1]}'
    bad = HttpResponse(body, status=201, content_type="application/json")
    found = published.problems("POST", "/api/leads", bad)
    assert any(
        p.startswith("POST /api/leads -> 201: body violates the published schema at #/")
        and "savedCount" in p
        for p in found
    ), found
    assert any("leadIds/0" in p for p in found), found

    bad.status_code = 418
    assert published.problems("POST", "/api/leads", bad) == [
        "POST /api/leads -> 418: status 418 is not documented"
        " (documented: 200, 201, 401, 402, 404, 500)"
    ]
    bad.status_code = 201
    bad["Content-Type"] = "text/html"
    assert (
        "content type 'text/html' is not documented"
        in published.problems("POST", "/api/leads", bad)[0]
    )


@pytest.mark.parametrize(
    "what,correct,example", published.CORRECTIONS, ids=[c[0][:40] for c in published.CORRECTIONS]
)
def test_each_correction_of_the_published_document_is_needed(what, correct, example):
    """The published example fails the document as published and passes with the
    correction: the correction fixes a contradiction, it does not loosen the contract."""
    method, path, status, body = example
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    uncorrected = [c for c in published.CORRECTIONS if c[1] is not correct]
    without = published.load(published.corrected(published.PUBLISHED, uncorrected))
    assert published.problems(method, path, response, schema=without), what
    assert not published.problems(method, path, response), what
