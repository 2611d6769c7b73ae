import pytest

from leads.models import AvailabilityJob, Lead
from leads.services import lead_import, lead_list_create


def add_leads(workspace, count, *, start=0, lead_list=None, **fields):
    rows = [
        {"firstName": f"Person{i}", "phone": f"+1202555{i:04d}", **fields}
        for i in range(start, start + count)
    ]
    return lead_import(workspace=workspace, rows=rows, lead_list=lead_list).lead_ids


def test_it_lists_leads_with_their_status(acme, alice_client):
    ids = add_leads(acme, 3)
    Lead.objects.filter(pk=ids[0]).update(availability_status="available")
    Lead.objects.filter(pk=ids[1]).update(availability_status="checking")
    html = alice_client.get("/leads/").content.decode()
    assert "Person0" in html and "Person2" in html
    assert "dot-available" in html
    assert "spinner" in html
    assert "No active line" in html  # the third, checked automatically without a line
    assert "1–3 of 3" in html


def test_no_active_line_prompt_links_to_lines(acme, alice_client):
    html = alice_client.get("/leads/").content.decode()
    assert 'id="no-active-line"' in html
    assert 'href="/lines/"' in html


def test_prompt_is_gone_with_an_active_line(acme, alice_client, make_line):
    make_line(acme)
    assert 'id="no-active-line"' not in alice_client.get("/leads/").content.decode()


def test_search_and_filters(acme, alice_client):
    vip = lead_list_create(workspace=acme, name="VIP")
    add_leads(acme, 2)
    add_leads(acme, 1, start=50, lead_list=vip, companyName="Initech")
    html = alice_client.get("/leads/?search=initech").content.decode()
    assert "Person50" in html and "Person0" not in html
    html = alice_client.get(f"/leads/?list={vip.pk}").content.decode()
    assert "Person50" in html and "Person1" not in html
    Lead.objects.filter(first_name="Person1").update(availability_status="available")
    html = alice_client.get("/leads/?availability=available").content.decode()
    assert "Person1" in html and "Person0" not in html


def test_pagination_keeps_filters(acme, alice_client):
    add_leads(acme, 30)
    html = alice_client.get("/leads/?limit=25&search=Person").content.decode()
    assert "1–25 of 30" in html
    assert "?search=Person&amp;limit=25&amp;page=2" in html
    html = alice_client.get("/leads/?limit=25&search=Person&page=2").content.decode()
    assert "26–30 of 30" in html


def test_bad_query_values_fall_back_to_defaults(acme, alice_client):
    add_leads(acme, 2)
    response = alice_client.get("/leads/?page=abc&limit=9999&list=nope&availability=zzz")
    assert response.status_code == 200
    assert "Person1" in response.content.decode()


def test_it_never_shows_another_workspaces_leads(acme, globex, alice_client):
    add_leads(acme, 1)
    add_leads(globex, 1, start=900)
    globex_list = lead_list_create(workspace=globex, name="Secret")
    html = alice_client.get("/leads/").content.decode()
    assert "Person900" not in html
    html = alice_client.get(f"/leads/?list={globex_list.pk}").content.decode()
    assert "Person900" not in html and "Secret" not in html


def test_list_page_runs_a_fixed_number_of_queries(acme, alice_client, django_assert_num_queries):
    # session, user, memberships, lists, tags, leads, their lists, their tags, count,
    # active line, job
    add_leads(acme, 30)
    alice_client.get("/leads/")
    with django_assert_num_queries(11):
        alice_client.get("/leads/?limit=25")
    add_leads(acme, 90, start=100, lead_list=lead_list_create(workspace=acme, name="More"))
    with django_assert_num_queries(11):
        alice_client.get("/leads/?limit=100&page=1")
    with django_assert_num_queries(11):
        alice_client.get("/leads/?limit=25&page=2&search=Person")


def test_a_page_that_holds_every_match_needs_no_count(
    acme, alice_client, django_assert_num_queries
):
    add_leads(acme, 3)
    alice_client.get("/leads/")
    with django_assert_num_queries(10):
        html = alice_client.get("/leads/?search=Person1").content.decode()
    assert "1–1 of 1" in html


def test_large_counts_are_capped(acme, alice_client, monkeypatch):
    from leads import views

    monkeypatch.setattr(views, "COUNT_CAP", 5)
    add_leads(acme, 30)
    html = alice_client.get("/leads/?limit=25").content.decode()
    # SQLite has no planner estimate: the cap is shown; Postgres shows "about N".
    assert ("1–25 of 5+" in html) or ("1–25 of about" in html)
    assert "Page 1 of" not in html


def test_pages_too_far_back_ask_for_filters(acme, alice_client, monkeypatch):
    from leads import views

    monkeypatch.setattr(views, "MAX_OFFSET", 25)
    add_leads(acme, 60)
    html = alice_client.get("/leads/?limit=25&page=3").content.decode()
    assert "too far back" in html
    assert "Person" not in html


def test_row_check_without_a_line_marks_the_lead(acme, alice_client):
    (lead_id,) = add_leads(acme, 1)
    Lead.objects.filter(pk=lead_id).update(availability_status="")
    response = alice_client.post(f"/leads/{lead_id}/check/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith(f'<tr id="lead-{lead_id}">')
    assert "No active line" in html and 'href="/lines/"' in html
    assert Lead.objects.get(pk=lead_id).availability_status == "no_active_line"


def test_row_check_asks_the_relay(acme, alice_client, make_line, relay):
    make_line(acme)
    (lead_id,) = lead_import(
        workspace=acme, rows=[{"firstName": "Eve", "phone": "+12025550124"}]
    ).lead_ids
    Lead.objects.filter(pk=lead_id).update(availability_status="")
    html = alice_client.post(f"/leads/{lead_id}/check/").content.decode()
    assert "dot-available" in html
    assert Lead.objects.get(pk=lead_id).availability_status == "available"


def test_row_check_of_a_foreign_lead_is_404(acme, globex, alice_client):
    (lead_id,) = add_leads(globex, 1)
    assert alice_client.post(f"/leads/{lead_id}/check/").status_code == 404
    assert alice_client.post("/leads/not-an-id/check/").status_code == 404


def test_bulk_check_runs_a_job_to_completion(
    acme,
    alice_client,
    make_line,
    django_capture_on_commit_callbacks,
):
    make_line(acme)
    ids = add_leads(acme, 4)
    Lead.objects.filter(pk__in=ids).update(availability_status="")
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post("/leads/check/", {"lead": ids[:3]}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response["HX-Trigger"] == "leads-changed"
    assert 'id="bulk-progress"' in response.content.decode()
    job = AvailabilityJob.objects.get(workspace=acme, source="manual")
    assert job.total == 3 and job.status == "done"
    html = alice_client.get(f"/leads/jobs/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-job-status="done"' in html and "100%" in html
    assert "hx-trigger" not in html  # finished: no more polling
    statuses = dict(Lead.objects.filter(pk__in=ids).values_list("pk", "availability_status"))
    assert statuses[ids[3]] == ""
    assert {statuses[i] for i in ids[:3]} <= {"available", "unavailable"}


def test_bulk_check_of_all_matching_leads(acme, alice_client, make_line):
    make_line(acme)
    add_leads(acme, 3)
    add_leads(acme, 2, start=500, companyName="Hooli")
    alice_client.post("/leads/check/", {"all_matching": "1", "search": "hooli"})
    job = AvailabilityJob.objects.get(workspace=acme, source="manual")
    assert job.total == 2
    assert set(job.lead_ids) == set(
        Lead.objects.filter(company_name="Hooli").values_list("pk", flat=True)
    )


def test_bulk_check_ignores_foreign_ids(acme, globex, alice_client, make_line):
    make_line(acme)
    foreign = add_leads(globex, 1, start=900)
    response = alice_client.post("/leads/check/", {"lead": foreign})
    assert "Select at least one lead" in response.content.decode()
    assert not AvailabilityJob.objects.filter(source="manual").exists()


def test_bulk_check_without_a_line_marks_the_leads(acme, alice_client):
    ids = add_leads(acme, 2)
    Lead.objects.filter(pk__in=ids).update(availability_status="")
    html = alice_client.post("/leads/check/", {"lead": ids}).content.decode()
    assert 'href="/lines/"' in html
    assert set(Lead.objects.values_list("availability_status", flat=True)) == {"no_active_line"}


def test_job_progress_polls_until_final(acme, globex, alice_client):
    job = AvailabilityJob.objects.create(
        workspace=acme, lead_ids=["a"] * 4, total=4, done=1, status="running"
    )
    html = alice_client.get(f"/leads/jobs/{job.pk}/").content.decode()
    assert 'hx-trigger="every 1s"' in html and "25%" in html
    job.status, job.done = "done", 4
    job.save()
    response = alice_client.get(f"/leads/jobs/{job.pk}/")
    assert "100%" in response.content.decode()
    assert response["HX-Trigger"] == "leads-changed"
    other = AvailabilityJob.objects.create(workspace=globex, total=1)
    assert alice_client.get(f"/leads/jobs/{other.pk}/").status_code == 404


@pytest.mark.parametrize("status", ["available", "unavailable", "checking", "error"])
def test_each_status_has_an_icon_and_a_label(acme, alice_client, status):
    (lead_id,) = add_leads(acme, 1)
    Lead.objects.filter(pk=lead_id).update(availability_status=status)
    html = alice_client.get("/leads/").content.decode()
    label = {"available": "Available", "unavailable": "Unavailable", "checking": "Checking…"}
    assert label.get(status, "Error") in html
