import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from leads.models import Lead, LeadList
from leads.services import lead_import, lead_list_create


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    return tmp_path


def csv_file(text: str, name="leads.csv", encoding="utf-8"):
    return SimpleUploadedFile(name, text.encode(encoding), content_type="text/csv")


CSV = (
    "First Name,Last Name,Mobile,E-mail,Company,Favourite colour\n"
    "Ann,Lee,(202) 555-0101,ann@example.com,Initech,blue\n"
    "Ben,Ray,202-555-0102,,Hooli,\n"
    "Cat,Ng,not a phone,cat@example.com,,green\n"
    "Ann,Again,+1 202 555 0101,,,\n"
    "\n"
    "Dan,Oz,,dan@example,,\n"
)


def upload(client, text=CSV, **fields):
    data = {"file": csv_file(text), "list": "__new__", "new_list": "Spring fair"}
    data["default_country_code"] = "+1"
    data.update(fields)
    return client.post("/leads/import/", data)


def job_id_from(response) -> str:
    return re.search(r"/leads/import/([0-9a-f]{24})/", response["Location"]).group(1)


def test_import_previews_maps_and_imports(acme, alice_client, django_capture_on_commit_callbacks):
    response = upload(alice_client)
    assert response.status_code == 302
    job_id = job_id_from(response)
    assert not LeadList.objects.filter(name="Spring fair").exists()  # nothing saved yet

    page = alice_client.get(f"/leads/import/{job_id}/")
    html = page.content.decode()
    assert "(202) 555-0101" in html and "5 rows" in html
    # Columns are matched from their headers.
    assert re.search(r'name="column_2"[^>]*>.*?<option value="phone" selected>', html, re.S)
    assert re.search(r'name="column_5"[^>]*>.*?<option value="custom" selected>', html, re.S)

    mapping = {
        "column_0": "first_name",
        "column_1": "last_name",
        "column_2": "phone",
        "column_3": "email",
        "column_4": "company_name",
        "column_5": "custom",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/leads/import/{job_id}/", mapping)
    assert response["Location"] == f"/leads/import/{job_id}/progress/"
    html = alice_client.get(response["Location"]).content.decode()
    assert 'data-import-status="done"' in html and "100%" in html
    assert re.search(r'id="import-saved">2<', html)
    assert re.search(r'id="import-duplicates">1<', html)
    assert re.search(r'id="import-invalid">2<', html)
    assert "<td>4</td><td>phone</td>" in html  # line 4 of the file
    assert "<td>7</td><td>email</td>" in html

    spring = LeadList.objects.get(workspace=acme, name="Spring fair")
    ann = Lead.objects.get(workspace=acme, first_name="Ann")
    assert ann.phone == "+12025550101" and ann.custom_fields == {"Favourite colour": "blue"}
    assert set(spring.leads.values_list("first_name", flat=True)) == {"Ann", "Ben"}


def test_import_into_an_existing_list_links_existing_leads(acme, alice_client):
    vip = lead_list_create(workspace=acme, name="VIP")
    lead_import(workspace=acme, rows=[{"phone": "+12025550101", "firstName": "Old"}])
    response = upload(alice_client, list=vip.pk, new_list="")
    job_id = job_id_from(response)
    alice_client.post(f"/leads/import/{job_id}/", {"column_2": "phone", "column_0": "first_name"})
    html = alice_client.get(f"/leads/import/{job_id}/progress/").content.decode()
    assert re.search(r'id="import-saved">1<', html)  # Ben; Ann existed, Cat/Dan invalid
    assert Lead.objects.get(phone="+12025550101").first_name == "Old"  # not overwritten
    assert vip.leads.count() == 2


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"\xff\xfe\x00bad", "not UTF-8"),
        (b"", "file is empty"),
        (b"phone,email\n", "no rows"),
    ],
)
def test_rejected_files_save_nothing(acme, alice_client, content, error):
    data = {
        "file": SimpleUploadedFile("x.csv", content),
        "list": "__new__",
        "new_list": "Rejected",
        "default_country_code": "+1",
    }
    response = alice_client.post("/leads/import/", data)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert b'value="Rejected"' in response.content  # what was typed is kept
    assert not LeadList.objects.filter(name="Rejected").exists()
    assert not Lead.objects.exists()


def test_upload_form_errors_in_place(acme, alice_client):
    lead_list_create(workspace=acme, name="VIP")
    response = upload(alice_client, new_list="vip", default_country_code="+999")
    html = response.content.decode()
    assert response.status_code == 400
    assert "A list with this name exists" in html
    assert "Unknown country code" in html


def test_mapping_needs_a_phone_or_email_and_no_repeats(acme, alice_client):
    job_id = job_id_from(upload(alice_client))
    page = alice_client.post(f"/leads/import/{job_id}/", {"column_0": "first_name"})
    assert page.status_code == 400
    assert "at least one column to a phone or email" in page.content.decode()
    page = alice_client.post(f"/leads/import/{job_id}/", {"column_2": "phone", "column_3": "phone"})
    assert "Phone is already filled from column" in page.content.decode()
    assert not Lead.objects.exists()


def test_other_workspaces_cannot_see_an_import(acme, globex, alice_client, charlie_client):
    job_id = job_id_from(upload(alice_client))
    assert charlie_client.get(f"/leads/import/{job_id}/").status_code == 404
    assert charlie_client.get(f"/leads/import/{job_id}/progress/").status_code == 404
    assert charlie_client.post(f"/leads/import/{job_id}/", {"column_2": "phone"}).status_code == 404
    assert alice_client.get("/leads/import/../../etc/").status_code == 404
    assert alice_client.get("/leads/import/zzz/progress/").status_code == 404


def test_an_import_no_worker_picked_up_is_reported(acme, alice_client, monkeypatch):
    from leads import import_tasks

    monkeypatch.setattr(import_tasks.lead_import_run, "delay", lambda job_id: None)
    job_id = job_id_from(upload(alice_client))
    alice_client.post(f"/leads/import/{job_id}/", {"column_2": "phone"})
    html = alice_client.get(f"/leads/import/{job_id}/progress/").content.decode()
    assert 'data-import-status="queued"' in html and 'hx-trigger="every 1s"' in html
    monkeypatch.setattr(import_tasks, "STALLED_AFTER_SECONDS", -1)
    html = alice_client.get(f"/leads/import/{job_id}/progress/").content.decode()
    assert 'data-import-status="failed"' in html and "no worker picked it up" in html
    assert "hx-trigger" not in html
