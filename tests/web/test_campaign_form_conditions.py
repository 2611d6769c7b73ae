"""The campaign form's stop conditions and branch paths: nested in each step, added
and removed without saving, checked on save with errors in place."""

import pytest

from campaigns.models import Campaign, Step
from tests.web.test_campaign_pages import campaign_data, make_campaign, step

pytestmark = pytest.mark.django_db


def branching_data(**overrides):
    data = campaign_data(
        [step("Hello"), step("Second", delay="1"), {**step("", delay="2"), "kind": "branch"}]
    )
    data.update(
        {
            "steps-1-kind": "message",
            "steps-1-rules": "1",
            "steps-1-rule-0-type": "tag_exists",
            "steps-1-rule-0-tag": "customer",
            "steps-2-paths": "2",
            "steps-2-path-0-type": "no_reply_for",
            "steps-2-path-0-hours": "48",
            "steps-2-path-0-steps": "1",
            "steps-2-path-0-step-0-message": "Nudge",
            "steps-2-path-0-step-0-delay": "0",
            "steps-2-path-0-step-0-delay_unit": "hours",
            "steps-2-path-0-step-0-message_type": "imessage",
            "steps-2-path-1-type": "default",
            "steps-2-path-1-steps": "0",
        }
    )
    data.update(overrides)
    return data


def test_it_creates_a_campaign_with_stop_conditions_and_a_branch(acme, alice_client):
    response = alice_client.post("/campaigns/new/", branching_data())
    assert response.status_code == 302, response.content.decode()[-3000:]
    campaign = Campaign.objects.get()
    steps = list(campaign.steps.order_by("position"))
    assert [(s.position, s.kind, s.message) for s in steps] == [
        (0, "message", "Hello"),
        (1, "message", "Second"),
        (2, "branch", ""),
        (100, "message", "Nudge"),
    ]
    assert [(r["type"], r["tag"]) for r in steps[1].stop_rules] == [("tag_exists", "customer")]
    assert [c["type"] for c in steps[2].branch_conditions] == ["no_reply_for", "default"]
    assert steps[2].branch_conditions[0]["hours"] == 48
    assert (steps[3].parent, steps[3].path) == (steps[2], 0)

    page = alice_client.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    assert 'name="steps-1-rule-0-tag" value="customer"' in page
    assert 'name="steps-2-path-0-hours" value="48' in page
    assert "Nudge</textarea>" in page


def test_a_branch_without_default_is_refused_in_place(acme, alice_client):
    data = branching_data(**{"steps-2-path-1-type": "replied"})
    response = alice_client.post("/campaigns/new/", data)
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="steps-2-paths_errors"' in page
    assert "A branch needs a Default path" in page
    assert "Nudge</textarea>" in page
    assert not Campaign.objects.exists()
    assert not Step.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "error_id", "text"),
    [
        ("steps-1-rule-0-tag", "", "steps-1-rule-0-tag_errors", "This condition needs a tag"),
        ("steps-2-path-0-hours", "", "steps-2-path-0-hours_errors", "Must be a number of hours"),
        (
            "steps-2-path-0-step-0-message",
            " ",
            "steps-2-path-0-step-0-message_errors",
            "A step needs a message",
        ),
    ],
)
def test_nested_errors_show_on_their_field(acme, alice_client, field, value, error_id, text):
    response = alice_client.post("/campaigns/new/", branching_data(**{field: value}))
    assert response.status_code == 400
    page = response.content.decode()
    assert f'id="{error_id}"' in page
    assert text in page
    assert not Campaign.objects.exists()


def test_nested_buttons_add_and_remove_without_saving(acme, alice_client):
    data = branching_data()
    page = alice_client.post("/campaigns/new/", {**data, "step_op": "addrule:1"}).content.decode()
    assert 'name="steps-1-rules" value="2"' in page
    assert 'name="steps-1-rule-0-tag" value="customer"' in page
    page = alice_client.post("/campaigns/new/", {**data, "step_op": "addpath:2"}).content.decode()
    assert 'name="steps-2-paths" value="3"' in page
    page = alice_client.post(
        "/campaigns/new/", {**data, "step_op": "addpathstep:2:1"}
    ).content.decode()
    assert 'name="steps-2-path-1-steps" value="1"' in page
    page = alice_client.post(
        "/campaigns/new/", {**data, "step_op": "removepathstep:2:0:0"}
    ).content.decode()
    assert "Nudge</textarea>" not in page
    page = alice_client.post("/campaigns/new/", {**data, "step_op": "up:2"}).content.decode()
    # The branch moved with its paths.
    assert 'name="steps-1-path-0-hours" value="48' in page
    assert not Campaign.objects.exists()


def test_a_step_turned_into_a_branch_shows_its_paths(acme, alice_client):
    data = campaign_data([step("Hello"), step("Second", delay="1")])
    data["steps-1-kind"] = "branch"
    page = alice_client.post("/campaigns/new/", {**data, "step_op": "refresh:1"}).content.decode()
    assert "+ Add path" in page
    assert "Second</textarea>" not in page


def test_the_form_keeps_a_campaigns_conditions_when_saved_again(acme, alice_client):
    campaign = make_campaign(acme)
    alice_client.post(f"/campaigns/{campaign.pk}/edit/", branching_data())
    alice_client.post(f"/campaigns/{campaign.pk}/edit/", branching_data(name="Renamed"))
    campaign.refresh_from_db()
    assert campaign.name == "Renamed"
    assert campaign.steps.get(position=1).stop_rules[0]["tag"] == "customer"
