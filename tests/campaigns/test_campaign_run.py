"""A campaign created through the API runs through the relay simulator to completion."""

import pytest

from campaigns.models import Campaign, Enrollment
from messaging.models import Message
from tests.campaigns.conftest import drive, list_leads

pytestmark = pytest.mark.django_db(transaction=True)


def stats(api, campaign_id):
    response = api.get(f"/api/campaigns/{campaign_id}")
    assert response.status_code == 200
    return response.json()


def test_it_runs_a_campaign_from_first_step_to_completion(
    api, clock, sim, make_line, make_list, create_campaign
):
    line_a, line_b = make_line(), make_line()
    lead_list = make_list(4)
    campaign = create_campaign(listId=lead_list.pk, lineIds=[line_a.pk, line_b.pk])
    assert campaign["status"] == "draft"
    assert campaign["stats"]["total"] == 0

    response = api.put(
        "/api/campaigns", {"campaignId": campaign["_id"], "action": "start"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["campaign"]["stats"]["total"] == 12

    drive(clock, rounds=3)
    body = stats(api, campaign["_id"])
    assert body["stats"]["sent"] == 4
    assert body["stats"]["pending"] == 8
    assert len(sim.sent) == 4
    # Each lead stays on one line, leads spread over both.
    lines_by_lead = {}
    for message in Message.objects.filter(campaign_id=campaign["_id"]):
        lines_by_lead.setdefault(message.lead_id, set()).add(message.line_id)
    assert all(len(v) == 1 for v in lines_by_lead.values())
    assert {next(iter(v)) for v in lines_by_lead.values()} == {line_a.pk, line_b.pk}

    # Step 2 waits two days after step 1 went out.
    clock.advance(days=2, seconds=-30)
    drive(clock, rounds=3)
    assert len(sim.sent) == 4
    clock.advance(minutes=1)
    drive(clock, rounds=3)
    assert len(sim.sent) == 8
    clock.advance(hours=3)
    drive(clock, rounds=3)
    assert len(sim.sent) == 12

    body = stats(api, campaign["_id"])
    assert body["status"] == "completed"
    assert body["stats"]["sent"] == 12
    assert body["stats"]["pending"] == 0
    assert body["stats"]["total"] == 12
    texts = [m["text"] for m in sim.sent]
    assert texts[:4] == [f"Hi Lead{i}" for i in range(4)] or sorted(texts[:4]) == sorted(
        f"Hi Lead{i}" for i in range(4)
    )
    assert set(Enrollment.objects.values_list("state", flat=True)) == {"completed"}
    assert Campaign.objects.get().completed_at is not None
    leads = list_leads(lead_list)
    assert len(leads) == 4
