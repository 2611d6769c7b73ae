import pytest
from django.urls import reverse

from campaigns.models import Campaign, Enrollment, Step
from leads.models import Lead

pytestmark = pytest.mark.django_db


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
