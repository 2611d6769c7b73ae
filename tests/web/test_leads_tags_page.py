"""The Leads page: tags shown on each row, a filter by tag, and "Add Tag" on the
selected (or every matching) lead."""

from leads.models import Lead, LeadTag
from leads.services import lead_import


def add_leads(workspace, count, start=0, **fields):
    rows = [
        {"firstName": f"Person{i}", "phone": f"+1202555{i:04d}", **fields}
        for i in range(start, start + count)
    ]
    return lead_import(workspace=workspace, rows=rows).lead_ids


def test_rows_show_tags_and_the_page_filters_by_tag(acme, alice_client):
    add_leads(acme, 2, tags=["VIP"])
    add_leads(acme, 2, start=10)
    html = alice_client.get("/leads/").content.decode()
    assert '<span class="badge tag">VIP</span>' in html
    assert '<option value="VIP">VIP</option>' in html
    filtered = alice_client.get("/leads/?tag=VIP").content.decode()
    assert "Person0" in filtered and "Person1" in filtered
    assert "Person10" not in filtered and "1–2 of 2" in filtered


def test_add_tag_to_the_selected_leads(acme, globex, alice_client):
    ids = add_leads(acme, 3)
    foreign = add_leads(globex, 1, start=50)
    response = alice_client.post(
        "/leads/tag/",
        {"lead": [ids[0], ids[1], foreign[0]], "tag_name": "  Hot   lead "},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert response["HX-Trigger"] == "leads-changed"
    assert "Tag “Hot lead” added to 2 leads." in response.content.decode()
    tagged = set(LeadTag.objects.values_list("lead_id", "tag__name", "source"))
    assert tagged == {(ids[0], "Hot lead", "dashboard"), (ids[1], "Hot lead", "dashboard")}
    again = alice_client.post("/leads/tag/", {"lead": ids, "tag_name": "hot LEAD"})
    assert "added to 1 lead. 2 already had it." in again.content.decode()


def test_add_tag_to_every_matching_lead_and_its_errors(acme, alice_client):
    add_leads(acme, 3, companyName="Hooli")
    add_leads(acme, 2, start=10)
    response = alice_client.post(
        "/leads/tag/", {"all_matching": "1", "search": "hooli", "tag_name": "hooli"}
    )
    assert "added to 3 leads" in response.content.decode()
    assert Lead.objects.filter(tags__name="hooli").count() == 3
    nothing = alice_client.post("/leads/tag/", {"tag_name": "x"})
    assert "Select at least one lead first." in nothing.content.decode()
    blank = alice_client.post("/leads/tag/", {"all_matching": "1", "tag_name": "  "})
    assert "Type a tag to add." in blank.content.decode()
