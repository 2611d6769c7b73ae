import pytest

from leads.models import Lead, LeadIdentifier, ListMembership


@pytest.fixture
def post_leads(api):
    def post(leads, **body):
        return api.post("/api/leads", {"leads": leads, **body}, format="json")

    return post


def snapshot(workspace=None) -> tuple:
    """Everything an import can change, for 'nothing was saved' assertions."""
    leads = Lead.objects.all()
    if workspace is not None:
        leads = leads.filter(workspace=workspace)
    return (
        sorted(leads.values_list("id", "phone", "email", "first_name", "updated_at")),
        sorted(LeadIdentifier.objects.values_list("value", "lead_id")),
        sorted(ListMembership.objects.values_list("lead_list_id", "lead_id")),
    )
