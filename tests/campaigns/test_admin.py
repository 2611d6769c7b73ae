import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.models import Campaign, Enrollment, Step
from campaigns.services import StepSpec, campaign_create
from leads.models import Lead
from messaging.models import Message

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:campaigns_campaign_changelist")


def test_operators_can_browse_campaigns_steps_and_enrollments(admin_client, acme):
    campaign = Campaign.objects.create(workspace=acme, name="Admin view")
    step = Step.objects.create(campaign=campaign, position=0, message="Hi")
    lead = Lead.objects.create(workspace=acme, phone="+12025550100")
    enrollment = Enrollment.objects.create(workspace=acme, campaign=campaign, lead=lead)
    for model, obj in ((Campaign, campaign), (Step, step), (Enrollment, enrollment)):
        name = model._meta.model_name
        assert admin_client.get(reverse(f"admin:campaigns_{name}_changelist")).status_code == 200
        change = reverse(f"admin:campaigns_{name}_change", args=[obj.pk])
        assert admin_client.get(change).status_code == 200


def make_campaign(workspace, lead_list=None, name="Admin run"):
    return campaign_create(
        workspace=workspace,
        name=name,
        steps=[StepSpec(message="Hi", delay=0, delay_unit="minutes")],
        list_id=lead_list.pk if lead_list else None,
    )


def act(client, action, *campaigns):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [c.pk for c in campaigns]},
        follow=True,
    )


def test_actions_start_pause_resume_and_retry_through_the_services(
    admin_client, acme, make_line, make_list
):
    make_line()
    campaign = make_campaign(acme, make_list(2))

    page = act(admin_client, "start_campaigns", campaign).content.decode()
    assert "1 campaign(s) started." in page
    campaign.refresh_from_db()
    assert campaign.status == "active"
    # Starting went through the service: the list was enrolled.
    assert Message.objects.filter(campaign_id=campaign.pk).count() == 2

    act(admin_client, "pause_campaigns", campaign)
    campaign.refresh_from_db()
    assert campaign.status == "paused"
    act(admin_client, "resume_campaigns", campaign)
    campaign.refresh_from_db()
    assert campaign.status == "active"

    failed = Message.objects.filter(campaign_id=campaign.pk).first()
    Message.objects.filter(pk=failed.pk).update(status="failed", error_message="boom")
    page = act(admin_client, "retry_failed_campaigns", campaign).content.decode()
    assert "retrying their failed messages" in page
    failed.refresh_from_db()
    assert (failed.status, failed.error_message) == ("scheduled", "")


def test_an_action_that_does_not_apply_says_why(admin_client, acme, make_line):
    make_line(health_status="down")
    draft = make_campaign(acme)
    page = act(admin_client, "start_campaigns", draft).content.decode()
    assert "Admin run: No healthy line for this campaign" in page
    page = act(admin_client, "pause_campaigns", draft).content.decode()
    assert "only an active campaign can be paused" in page
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_status_is_read_only_in_the_change_form(admin_client, acme):
    campaign = make_campaign(acme)
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert 'name="status"' not in page.content.decode()


def test_step_message_type_is_a_choice(admin_client, acme):
    step = make_campaign(acme).steps.get()
    page = admin_client.get(reverse("admin:campaigns_step_change", args=[step.pk]))
    html = page.content.decode()
    assert '<select name="message_type"' in html
    assert '<option value="email"' in html


def test_the_changelist_runs_a_fixed_number_of_queries(
    admin_client, acme, globex, make_list, django_assert_num_queries
):
    make_campaign(acme, make_list(1))
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(CHANGELIST).status_code == 200
    for i in range(4):
        workspace = globex if i % 2 else acme
        make_campaign(workspace, make_list(1, workspace=workspace), name=f"More {i}")
    with django_assert_num_queries(len(one.captured_queries)):
        page = admin_client.get(CHANGELIST)
    assert "More 3" in page.content.decode()
