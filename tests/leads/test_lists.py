"""/api/lists."""

import pytest

from leads.models import Lead, LeadList, ListMembership
from leads.services import lead_import, lead_list_get_or_create_default, lead_list_quick_sends

NOT_FOUND = {"error": "List not found"}


def test_create_list_and_fetch_it(api, acme):
    response = api.post("/api/lists", {"name": "  Prospects "}, format="json")
    assert response.status_code == 201
    created = response.json()["list"]
    assert created["name"] == "Prospects"
    assert created["leadCount"] == 0
    assert created["createdAt"].endswith("Z")
    lead_import(workspace=acme, rows=[{"phone": "+12025551234"}],
                lead_list=LeadList.objects.get(pk=created["_id"]))  # fmt: skip
    fetched = api.get(f"/api/lists/{created['_id']}").json()["list"]
    assert fetched["leadCount"] == 1
    assert api.get("/api/lists").json()["lists"] == [fetched]


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "x" * 201}, {"name": 5.5j}])
def test_create_list_rejects_bad_names(api, body):
    if body.get("name") == 5.5j:
        body = {"name": ["a"]}
    response = api.post("/api/lists", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("name")


def test_duplicate_list_name_is_409(api):
    api.post("/api/lists", {"name": "Same"}, format="json")
    response = api.post("/api/lists", {"name": "Same"}, format="json")
    assert response.status_code == 409
    patch_target = api.post("/api/lists", {"name": "Other"}, format="json").json()["list"]
    response = api.patch(f"/api/lists/{patch_target['_id']}", {"name": "Same"}, format="json")
    assert response.status_code == 409


def test_rename_list(api, acme):
    lead_list = LeadList.objects.create(workspace=acme, name="Old")
    response = api.patch(f"/api/lists/{lead_list.pk}", {"name": "New"}, format="json")
    assert response.json()["list"]["name"] == "New"
    lead_list.refresh_from_db()
    assert lead_list.name == "New"


def test_delete_list_keeps_leads_unless_asked(api, acme):
    keep = LeadList.objects.create(workspace=acme, name="Keep")
    drop = LeadList.objects.create(workspace=acme, name="Drop")
    lead_import(workspace=acme, rows=[{"phone": "+12025551234"}], lead_list=keep)
    lead_import(workspace=acme, rows=[{"phone": "+12025559999"}], lead_list=drop)
    assert api.delete(f"/api/lists/{keep.pk}").status_code == 200
    assert Lead.objects.filter(workspace=acme).count() == 2
    response = api.delete(f"/api/lists/{drop.pk}", {"deleteLeads": True}, format="json")
    assert response.json() == {"success": True, "deletedLeads": 1}
    assert list(Lead.objects.values_list("phone", flat=True)) == ["+12025551234"]
    assert not LeadList.objects.filter(pk__in=[keep.pk, drop.pk]).exists()


def test_delete_leads_flag_in_query(api, acme):
    drop = LeadList.objects.create(workspace=acme, name="Drop")
    lead_import(workspace=acme, rows=[{"phone": "+12025559999"}], lead_list=drop)
    api.delete(f"/api/lists/{drop.pk}?deleteLeads=true")
    assert Lead.objects.count() == 0


def test_delete_leads_flag_is_validated_wherever_it_comes_from(api, acme):
    drop = LeadList.objects.create(workspace=acme, name="Drop")
    lead_import(workspace=acme, rows=[{"phone": "+12025559999"}], lead_list=drop)
    response = api.delete(f"/api/lists/{drop.pk}?deleteLeads=maybe")
    assert response.status_code == 400
    assert response.json()["error"].startswith("deleteLeads:")
    assert LeadList.objects.filter(pk=drop.pk).exists()
    response = api.delete(f"/api/lists/{drop.pk}", {"deleteLeads": 1}, format="json")
    assert response.json() == {"success": True, "deletedLeads": 1}


def test_another_workspace_cannot_see_or_change_lists(globex_api, acme):
    lead_list = LeadList.objects.create(workspace=acme, name="Secret")
    lead_import(workspace=acme, rows=[{"phone": "+12025551234"}], lead_list=lead_list)
    for response in [
        globex_api.get(f"/api/lists/{lead_list.pk}"),
        globex_api.patch(f"/api/lists/{lead_list.pk}", {"name": "Mine"}, format="json"),
        globex_api.delete(f"/api/lists/{lead_list.pk}", {"deleteLeads": True}, format="json"),
        globex_api.get(f"/api/lists/{'0' * 24}"),
        globex_api.get("/api/lists/garbage"),
    ]:
        assert response.status_code == 404
        assert response.json() == NOT_FOUND
    assert globex_api.get("/api/lists").json() == {"lists": []}
    lead_list.refresh_from_db()
    assert lead_list.name == "Secret"
    assert ListMembership.objects.filter(lead_list=lead_list).count() == 1


def test_default_and_quick_sends_lists_are_created_once(acme, globex):
    assert lead_list_get_or_create_default(workspace=acme) == lead_list_get_or_create_default(
        workspace=acme
    )
    quick = lead_list_quick_sends(workspace=acme)
    assert quick.name == "Quick Sends"
    assert lead_list_quick_sends(workspace=acme) == quick
    assert lead_list_quick_sends(workspace=globex) != quick
