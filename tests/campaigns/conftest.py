"""Campaign fixtures: lines on a relay simulator, leads in a list, a controllable clock,
and a driver that runs the pacing tick and the dispatcher until nothing is due."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest

from campaigns.services import campaigns_tick
from leads.models import Lead, LeadIdentifier, LeadList, ListMembership
from lines.services import line_create
from lines.simulator import RelaySimulator
from messaging.dispatch import dispatch_due
from tests.campaigns.customer_api import CustomerApi

SIM_PASSWORD = "sim-password"


class Clock:
    """Patches django.utils.timezone.now; moves only when told to."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock():
    # A Wednesday, 15:00 UTC.
    clock = Clock(datetime(2026, 3, 4, 15, 0, tzinfo=UTC))
    with mock.patch("django.utils.timezone.now", clock):
        yield clock


@pytest.fixture
def sim():
    with RelaySimulator(password=SIM_PASSWORD, delivery_delay=0) as simulator:
        yield simulator


@pytest.fixture
def make_line(acme, sim):
    def make(workspace=None, **fields):
        fields.setdefault("device_gap_seconds", 0)
        fields.setdefault("contact_gap_seconds", 0)
        fields.setdefault("check_gap_seconds", 0)
        fields.setdefault("health_status", "healthy")
        health = fields.pop("health_status")
        line = line_create(
            workspace=workspace or acme,
            server_url=sim.url,
            relay_password=SIM_PASSWORD,
            **fields,
        )
        line.health_status = health
        line.save(update_fields=["health_status"])
        return line

    return make


@pytest.fixture
def make_list(acme):
    counter = iter(range(1, 10**6))
    numbers = iter(range(0, 10**5, 1000))

    def make(count: int, workspace=None, name=None) -> LeadList:
        workspace = workspace or acme
        lead_list = LeadList.objects.create(
            workspace=workspace, name=name or f"List {next(counter)}"
        )
        # Even last digit: on iMessage in the simulator.
        start = next(numbers)
        leads = [
            Lead(
                workspace=workspace,
                first_name=f"Lead{i}",
                phone=f"+1202{5550000 + (start + i) * 10:07d}",
            )
            for i in range(count)
        ]
        Lead.objects.bulk_create(leads)
        LeadIdentifier.objects.bulk_create(
            LeadIdentifier(workspace=workspace, value=lead.phone, lead=lead, field="phone")
            for lead in leads
        )
        ListMembership.objects.bulk_create(
            ListMembership(lead_list=lead_list, lead=lead) for lead in leads
        )
        return lead_list

    return make


def list_leads(lead_list) -> list[Lead]:
    return list(Lead.objects.filter(memberships__lead_list=lead_list).order_by("pk"))


def drive(clock, *, rounds: int = 20, step: timedelta = timedelta(seconds=1)) -> None:
    """Run pacing and dispatch like beat would, moving the clock `step` each round."""
    for _ in range(rounds):
        campaigns_tick()
        while dispatch_due(limit=100).claimed:
            pass
        clock.now += step


@pytest.fixture
def twilio(acme):
    """A configured Twilio setup (SMS steps and SMS fallback texts need one)."""
    from messaging.models import FallbackConfig

    return FallbackConfig.objects.create(
        workspace=acme,
        enabled=True,
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="twilio-token",
        twilio_from_number="+15005550006",
    )


@pytest.fixture
def create_campaign(api):
    def create(**body):
        body.setdefault("name", "Spring outreach")
        body.setdefault(
            "steps",
            [
                {"message": "Hi {firstName}", "delay": 0, "delayUnit": "minutes"},
                {"message": "Following up", "delay": 2, "delayUnit": "days"},
                {"message": "Last note", "delay": 3, "delayUnit": "hours"},
            ],
        )
        response = api.post("/api/campaigns", body, format="json")
        assert response.status_code == 201, response.json()
        return response.json()["campaign"]

    return create


@pytest.fixture
def customer_api(settings):
    """A local server standing in for a customer's API (API tools may reach it)."""
    settings.API_TOOLS_ALLOW_PRIVATE_TARGETS = True
    settings.API_TOOLS_TIMEOUT_SECONDS = 1
    with CustomerApi() as api:
        yield api
