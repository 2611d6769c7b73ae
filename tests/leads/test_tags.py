"""Lead tags through the API (create, update, add/remove, filter, list) and imports."""

import pytest
from django.core.management import call_command

from leads.models import Lead, LeadTag, Tag


def create(api, *rows, expect=201):
    response = api.post("/api/leads", {"leads": list(rows)}, format="json")
    assert response.status_code == expect, response.json()
    return response.json()


def tags_of(api, lead_id):
    return api.get(f"/api/leads/{lead_id}").json()["lead"]["tags"]


def test_a_lead_is_created_with_its_tags(api, acme):
    Tag.objects.create(workspace=acme, name="vip")
    body = create(api, {"phone": "+12025550001", "tags": ["VIP", " Webinar  2026 ", "vip", ""]})
    lead_id = body["leadIds"][0]
    # The workspace's existing spelling is kept; names are trimmed and taken once.
    assert tags_of(api, lead_id) == ["vip", "Webinar 2026"]
    assert Tag.objects.filter(workspace=acme).count() == 2
    assert set(LeadTag.objects.values_list("source", flat=True)) == {"api"}


def test_a_duplicate_row_adds_its_tags_to_the_lead_it_matched(api):
    lead_id = create(api, {"phone": "+12025550001", "tags": ["a"]})["leadIds"][0]
    body = create(api, {"phone": "+12025550001", "tags": ["b"]}, expect=200)
    assert body["duplicateCount"] == 1
    assert tags_of(api, lead_id) == ["a", "b"]


@pytest.mark.parametrize(
    ("tags", "error"),
    [
        ("x" * 101, "leads[1].tags: A tag has at most 100 characters"),
        (["ok", 3], "leads[1].tags: Must be a list of tag names (strings)"),
        ({"a": 1}, "leads[1].tags: Must be a list of tag names"),
        ([f"t{i}" for i in range(51)], "leads[1].tags: At most 50 tags per lead"),
    ],
)
def test_bad_tags_are_a_400_and_nothing_is_saved(api, tags, error):
    response = api.post(
        "/api/leads",
        {"leads": [{"phone": "+12025550001", "tags": ["fine"]},
                   {"phone": "+12025550002", "tags": tags}]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert not Lead.objects.exists() and not Tag.objects.exists()


def test_an_update_replaces_the_tags_and_leaves_them_when_not_given(api):
    lead_id = create(api, {"phone": "+12025550001", "tags": ["a", "b"]})["leadIds"][0]
    response = api.patch(f"/api/leads/{lead_id}", {"tags": ["B", "c"]}, format="json")
    assert response.status_code == 200
    assert response.json()["lead"]["tags"] == ["b", "c"]
    api.patch(f"/api/leads/{lead_id}", {"firstName": "Ada"}, format="json")
    assert tags_of(api, lead_id) == ["b", "c"]
    bad = api.patch(f"/api/leads/{lead_id}", {"firstName": "X", "tags": ["x" * 101]}, format="json")
    assert bad.status_code == 400
    assert Lead.objects.get(pk=lead_id).first_name == "Ada"


def test_tags_are_added_and_removed_on_one_lead(api, globex_api):
    lead_id = create(api, {"phone": "+12025550001", "tags": ["a", "b"]})["leadIds"][0]
    response = api.post(
        f"/api/leads/{lead_id}/tags", {"add": ["c", "A"], "remove": ["B"]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["lead"]["tags"] == ["a", "c"]
    empty = api.post(f"/api/leads/{lead_id}/tags", {}, format="json")
    assert empty.status_code == 400 and empty.json()["error"] == "Give tags to add or remove"
    foreign = globex_api.post(f"/api/leads/{lead_id}/tags", {"add": ["x"]}, format="json")
    assert foreign.status_code == 404
    assert tags_of(api, lead_id) == ["a", "c"]


def test_leads_are_filtered_by_tag_and_tags_are_listed(api, globex_api):
    a = create(api, {"phone": "+12025550001", "tags": ["VIP"]})["leadIds"][0]
    create(api, {"phone": "+12025550002", "tags": ["cold"]})
    create(api, {"phone": "+12025550003"})
    page = api.get("/api/leads?tag=vip").json()
    assert [lead["_id"] for lead in page["leads"]] == [a]
    assert page["pagination"]["totalCount"] == 1
    assert api.get("/api/leads?tag=nope").json()["leads"] == []
    tags = api.get("/api/tags").json()["tags"]
    assert [(t["name"], t["leadCount"]) for t in tags] == [("cold", 1), ("VIP", 1)]
    assert globex_api.get("/api/tags").json()["tags"] == []
    assert globex_api.get("/api/leads?tag=vip").json()["leads"] == []


def test_a_csv_tags_column_tags_the_leads(acme, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text(
        'Phone,First Name,Tags\n+12025550001,Ada,"vip, webinar"\n+12025550002,Grace,\n'
        "+12025550001,Ada again,returning\n",
        encoding="utf-8",
    )
    call_command("import_leads", str(path), "--workspace", "Acme", "--list", "Conf")
    ada = Lead.objects.get(phone="+12025550001")
    grace = Lead.objects.get(phone="+12025550002")
    assert sorted(ada.tags.values_list("name", flat=True)) == ["returning", "vip", "webinar"]
    assert not grace.tags.exists()
    assert set(LeadTag.objects.values_list("source", flat=True)) == {"import"}
