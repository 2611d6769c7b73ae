"""Real objects of a workspace, for tests that need ids to put in paths."""

from functools import cached_property

import pytest


class Objects:
    """Real objects of the workspace for path parameters, made on first use."""

    def __init__(self, acme, make_line, api):
        self.workspace, self._make_line, self.api = acme, make_line, api

    @cached_property
    def line(self):
        return self._make_line(self.workspace, phone="+14155550100", contact_gap_seconds=0)

    @cached_property
    def leads(self) -> dict:
        body = {"leads": [{"firstName": "Ada", "phone": "+14155550102"}]}
        return self.api.post("/api/leads", body, format="json").json()

    def _campaign(self) -> str:
        steps = [{"message": "Hi", "delay": 0, "delayUnit": "minutes"}]
        body = {"name": "C", "steps": steps, "lineIds": [self.line.pk]}
        return self.api.post("/api/campaigns", body, format="json").json()["campaign"]["_id"]

    def _message(self) -> str:
        self.line  # noqa: B018 - a send needs an active line
        body = {"message": "Hi", "leadId": self.leads["leadIds"][0], "scheduledDate": "2099-01-01"}
        return self.api.post("/api/messages", body, format="json").json()["message"]["_id"]

    def _endpoint(self) -> str:
        from messaging.webhooks import webhook_endpoint_create

        return webhook_endpoint_create(
            workspace=self.workspace, url="http://127.0.0.1:9/h", events=["message.sent"], name="W"
        ).pk

    def _conversation(self) -> str:
        """A conversation with the lead: it wrote to the line."""
        from messaging.inbound import inbound_record

        self.leads  # noqa: B018
        inbound_record(
            workspace=self.workspace,
            address="+14155550102",
            text="Hello?",
            channel="imessage",
            external_id="hello-1",
            line=self.line,
        )
        return "+14155550102"

    def value(self, parameter: str) -> str:
        makers = {
            "lead_id": lambda: self.leads["leadIds"][0],
            "list_id": lambda: self.leads["listId"],
            "line_id": lambda: self.line.pk,
            "campaign_id": self._campaign,
            "message_id": self._message,
            "endpoint_id": self._endpoint,
            "conversation_id": self._conversation,
            "token": lambda: self.line.webhook_token,
            "job_id": lambda: "0" * 24,  # no job: the lookup itself is what is tested
        }
        if parameter not in self._made:
            self._made[parameter] = makers[parameter]()
        return self._made[parameter]

    @cached_property
    def _made(self) -> dict:
        return {}

    @cached_property
    def job_id(self) -> str:
        """A background availability check (more leads than are checked at once)."""
        self.line  # noqa: B018
        leads = [{"firstName": f"L{n}", "phone": f"+1415555{n:04d}"} for n in range(300, 307)]
        upload = self.api.post("/api/leads", {"leads": leads}, format="json").json()
        body = {"leadIds": upload["leadIds"]}
        return self.api.post("/api/leads/check-availability", body, format="json").json()["jobId"]


@pytest.fixture
def objects(acme, make_line, api, settings):
    settings.RATE_LIMITS_ENABLED = False
    # Webhook URLs are not resolved (no DNS lookups for generated host names).
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    return Objects(acme, make_line, api)
