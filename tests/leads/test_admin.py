import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from leads.models import Lead, LeadList
from leads.services import lead_import


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("op", "op@tuco.test", "op-password")
    client.force_login(user)
    return client


def test_lead_pages_render(operator, acme):
    lead_import(workspace=acme, rows=[{"phone": "+12025550001", "firstName": "Ada"}])
    lead = Lead.objects.get()
    assert operator.get("/admin/leads/lead/").status_code == 200
    assert b"Ada" in operator.get("/admin/leads/lead/?q=ada").content
    assert operator.get(f"/admin/leads/lead/{lead.pk}/change/").status_code == 200


def test_list_page_shows_counts_without_a_query_per_list(operator, acme):
    for n in range(3):
        lead_list = LeadList.objects.create(workspace=acme, name=f"L{n}")
        lead_import(workspace=acme, rows=[{"phone": f"+1202555000{n}"}], lead_list=lead_list)
    with CaptureQueriesContext(connection) as three:
        response = operator.get("/admin/leads/leadlist/")
    assert response.status_code == 200
    for n in range(3, 8):
        LeadList.objects.create(workspace=acme, name=f"L{n}")
    with CaptureQueriesContext(connection) as eight:
        operator.get("/admin/leads/leadlist/")
    assert len(eight) == len(three)
