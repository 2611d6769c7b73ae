import pytest
from django.test import override_settings

from leads import availability
from leads.models import AvailabilityJob, Lead, LeadList, ListMembership
from lines.models import Line
from tests.lines.relay_fixtures import availability_requests

LEAD_NOT_FOUND = {"error": "Lead not found"}
NO_LEADS = {"error": "No leads found to check"}
NO_LINE = {"error": "No active line configured", "code": "NO_ACTIVE_LINE"}


def lead(workspace, **fields):
    return Lead.objects.create(workspace=workspace, **fields)


@pytest.fixture
def line(acme, make_line):
    return make_line(acme)


# GET /api/leads/check-availability?id=


def test_it_checks_one_lead_and_records_the_status(api, acme, line):
    person = lead(acme, phone="+14155550132")
    response = api.get(f"/api/leads/check-availability?id={person.pk}")
    assert response.status_code == 200
    assert response.json() == {
        "success": True, "leadId": person.pk, "available": True, "status": "available",
    }  # fmt: skip
    person.refresh_from_db()
    assert person.availability_status == "available"


def test_it_requires_a_lead_id(api, line):
    response = api.get("/api/leads/check-availability")
    assert response.status_code == 400
    assert response.json() == {"error": "Lead ID is required"}


@pytest.mark.parametrize("lead_id", ["nope", "0" * 24])
def test_unknown_lead_is_404(api, line, lead_id):
    response = api.get(f"/api/leads/check-availability?id={lead_id}")
    assert response.status_code == 404
    assert response.json() == LEAD_NOT_FOUND


def test_another_workspaces_lead_is_404(api, globex, line, relay):
    theirs = lead(globex, phone="+14155550132")
    response = api.get(f"/api/leads/check-availability?id={theirs.pk}")
    assert response.status_code == 404
    assert response.json() == LEAD_NOT_FOUND
    assert availability_requests(relay) == 0
    theirs.refresh_from_db()
    assert theirs.availability_status == ""


def test_no_active_line_is_400_and_written_to_the_lead(api, acme):
    person = lead(acme, phone="+14155550132")
    response = api.get(f"/api/leads/check-availability?id={person.pk}")
    assert response.status_code == 400
    assert response.json() == NO_LINE
    person.refresh_from_db()
    assert person.availability_status == "no_active_line"


def test_an_inactive_line_does_not_count(api, acme, line):
    Line.objects.filter(pk=line.pk).update(is_active=False)
    response = api.post("/api/leads/check-availability", {"address": "+14155550132"}, format="json")
    assert (response.status_code, response.json()) == (400, NO_LINE)


# POST /api/leads/check-availability


def test_quick_address_check(api, line):
    response = api.post("/api/leads/check-availability", {"address": "+12025551234"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("success", "available", "address")} == {
        "success": True, "available": True, "address": "+12025551234",
    }  # fmt: skip


def test_quick_address_check_rejects_a_malformed_address(api, line, relay):
    response = api.post("/api/leads/check-availability", {"address": "hello"}, format="json")
    assert response.status_code == 400
    assert "address" in response.json()["error"]
    assert availability_requests(relay) == 0


def test_an_empty_address_falls_through_to_the_leads_path(api, line):
    for body in [{"address": ""}, {"address": "  "}, {}, {"address": "", "leadIds": []}]:
        response = api.post("/api/leads/check-availability", body, format="json")
        assert (response.status_code, response.json()) == (404, NO_LEADS)
    response = api.post(
        "/api/leads/check-availability", {"address": "", "leadIds": ["0" * 24]}, format="json"
    )
    assert (response.status_code, response.json()) == (404, NO_LEADS)


def test_small_batches_are_synchronous(api, acme, line):
    leads = [
        lead(acme, phone="+14155550132"),
        lead(acme, phone="+14155550133"),
        lead(acme, phone="+14155559999"),
    ]
    response = api.post(
        "/api/leads/check-availability", {"leadIds": [x.pk for x in leads]}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "checked": 3,
        "successful": 2,
        "errors": 1,
        "results": [
            {"leadId": leads[0].pk, "available": True, "status": "available"},
            {"leadId": leads[1].pk, "available": False, "status": "unavailable"},
            {"leadId": leads[2].pk, "available": False, "status": "error"},
        ],
        "processingMode": "synchronous",
    }
    statuses = dict(Lead.objects.values_list("pk", "availability_status"))
    assert [statuses[x.pk] for x in leads] == ["available", "unavailable", "error"]


def test_a_foreign_lead_in_a_batch_is_404_and_nothing_is_checked(api, acme, globex, line, relay):
    mine = lead(acme, phone="+14155550132")
    theirs = lead(globex, phone="+14155550134")
    response = api.post(
        "/api/leads/check-availability", {"leadIds": [mine.pk, theirs.pk]}, format="json"
    )
    assert (response.status_code, response.json()) == (404, NO_LEADS)
    assert availability_requests(relay) == 0


@pytest.mark.parametrize(
    "body",
    [{"leadIds": "abc"}, {"leadIds": [1, {}]}, {"listId": ""}, []],
)
def test_malformed_bulk_bodies_are_400(api, line, body):
    response = api.post("/api/leads/check-availability", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]


def test_large_batches_run_in_the_background(
    api,
    acme,
    line,
    relay,
    django_capture_on_commit_callbacks,
):
    leads = [lead(acme, phone=f"+1415555{i:04d}") for i in range(100, 112)]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/leads/check-availability", {"leadIds": [x.pk for x in leads]}, format="json"
        )
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "success": True,
        "message": "Bulk availability check started in background",
        "jobId": body["jobId"],
        "checked": 12,
        "processingMode": "background",
    }
    job = api.get(f"/api/leads/check-availability/jobs/{body['jobId']}").json()
    assert job["jobId"] == body["jobId"]
    assert (job["status"], job["total"], job["done"], job["successful"], job["errors"]) == (
        "done", 12, 12, 12, 0,
    )  # fmt: skip
    assert job["startedAt"].endswith("Z") and job["finishedAt"].endswith("Z")
    assert Lead.objects.filter(availability_status="available").count() == 6
    assert availability_requests(relay) == 12


@override_settings(AVAILABILITY_SYNC_MAX_LEADS=2)
def test_the_synchronous_limit_is_a_setting(api, acme, line):
    leads = [lead(acme, phone=f"+1415555{i:04d}") for i in range(100, 103)]
    response = api.post(
        "/api/leads/check-availability", {"leadIds": [x.pk for x in leads]}, format="json"
    )
    assert response.json()["processingMode"] == "background"


def test_a_list_can_be_checked(api, acme, line):
    the_list = LeadList.objects.create(workspace=acme, name="Prospects")
    members = [lead(acme, phone=f"+1415555{i:04d}") for i in range(100, 103)]
    lead(acme, phone="+14155550200")  # not in the list
    for member in members:
        ListMembership.objects.create(lead_list=the_list, lead=member)
    response = api.post("/api/leads/check-availability", {"listId": the_list.pk}, format="json")
    assert response.status_code == 200
    assert response.json()["checked"] == 3
    assert {r["leadId"] for r in response.json()["results"]} == {m.pk for m in members}


def test_an_unknown_list_is_404(api, globex, line):
    theirs = LeadList.objects.create(workspace=globex, name="Theirs")
    for list_id in ("nope", "0" * 24, theirs.pk):
        response = api.post("/api/leads/check-availability", {"listId": list_id}, format="json")
        assert (response.status_code, response.json()) == (404, {"error": "List not found"})


def test_quota_exhaustion_is_429_with_retry_after(api, acme, make_line):
    make_line(acme, daily_availability_checks_limit=1)
    api.post("/api/leads/check-availability", {"address": "+14155550130"}, format="json")
    response = api.post("/api/leads/check-availability", {"address": "+14155550132"}, format="json")
    assert response.status_code == 429
    assert response["Retry-After"] == "3600"
    body = response.json()
    assert body["available"] is False
    assert body["reason"] == "Daily availability check quota exhausted"
    assert body["error"]


# Jobs


def test_a_job_can_be_cancelled(api, acme, line, monkeypatch):
    queued = []
    monkeypatch.setattr(availability, "_queue_job", queued.append)
    leads = [lead(acme, phone=f"+1415555{i:04d}") for i in range(100, 110)]
    started = api.post(
        "/api/leads/check-availability", {"leadIds": [x.pk for x in leads]}, format="json"
    )
    job_id = started.json()["jobId"]
    assert Lead.objects.filter(availability_status="checking").count() == 10
    response = api.post(f"/api/leads/check-availability/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["finishedAt"]
    assert Lead.objects.filter(availability_status="checking").count() == 0
    assert availability.availability_job_process(job_id=job_id) is None
    assert api.delete(f"/api/leads/check-availability/jobs/{job_id}").json()["status"] == (
        "cancelled"
    )


def test_jobs_of_other_workspaces_are_invisible(api, globex_api, acme, line, monkeypatch):
    monkeypatch.setattr(availability, "_queue_job", lambda job_id: None)
    job = availability.availability_job_create(workspace=acme, lead_ids=[])
    for job_id in (job.pk, "x"):
        assert globex_api.get(f"/api/leads/check-availability/jobs/{job_id}").status_code == 404
    response = globex_api.post(f"/api/leads/check-availability/jobs/{job.pk}/cancel")
    assert response.status_code == 404
    job.refresh_from_db()
    assert job.status == AvailabilityJob.Status.QUEUED


# /api/check-availability


def test_get_check_availability(api, line):
    response = api.get("/api/check-availability", {"address": "tim@icloud.com"})
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "available": True,
        "address": "tim@icloud.com",
        "status": "available",
    }


def test_post_check_availability_one_or_many(api, line, relay):
    response = api.post("/api/check-availability", {"address": "+14155550133"}, format="json")
    assert [(r["address"], r["available"]) for r in response.json()["results"]] == [
        ("+14155550133", False)
    ]
    response = api.post(
        "/api/check-availability",
        {"addresses": ["+14155550132", "a@me.com", "a@example.com", "+1 415 555 0133"]},
        format="json",
    )
    assert response.status_code == 200
    assert [(r["address"], r["available"]) for r in response.json()["results"]] == [
        ("+14155550132", True), ("a@me.com", True), ("a@example.com", False),
        ("+14155550133", False),
    ]  # fmt: skip
    assert availability_requests(relay) == 4  # the repeated number came from the cache


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"address": ""},
        {"address": "nope"},
        {"addresses": []},
        {"addresses": ["+14155550132", "bad"]},
        {"addresses": ["+14155550132"] * 101},
        {"addresses": "+14155550132"},
    ],
)
def test_check_availability_rejects_bad_bodies(api, line, relay, body):
    response = api.post("/api/check-availability", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]
    assert availability_requests(relay) == 0


def test_get_check_availability_requires_an_address(api, line):
    for query in [{}, {"address": ""}, {"address": " "}]:
        response = api.get("/api/check-availability", query)
        assert response.status_code == 400
        assert response.json() == {"error": "Address parameter is required (phone or email)"}
    response = api.get("/api/check-availability", {"address": "nope"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("address:")


# /api/check-availability-rr


def test_round_robin_check_stops_at_the_first_available(api, line, relay):
    response = api.post(
        "/api/check-availability-rr",
        {"phones": ["+14155550131", "+14155550132", "+14155550134"], "emails": ["x@icloud.com"]},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["available"] is True
    assert availability_requests(relay) == 2


def test_round_robin_check_not_available(api, line):
    response = api.post(
        "/api/check-availability-rr",
        {"phones": ["+14155550131"], "emails": ["x@example.com"]},
        format="json",
    )
    assert response.json() == {"available": False, "reason": "Contact not available on iMessage"}


@pytest.mark.parametrize("body", [{}, {"phones": [], "emails": []}, {"phones": [""]}])
def test_round_robin_check_without_addresses_is_400(api, line, body):
    response = api.post("/api/check-availability-rr", body, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["available"] is False
    assert body["reason"] == "No phone or email addresses provided"


def test_round_robin_check_without_a_line(api):
    response = api.post("/api/check-availability-rr", {"phones": ["+14155550132"]}, format="json")
    assert (response.status_code, response.json()) == (400, NO_LINE)


# Cross-cutting


def test_every_availability_endpoint_is_in_the_availability_rate_limit_group():
    from django.urls import resolve

    for path in (
        "/api/leads/check-availability",
        "/api/leads/check-availability/jobs/x",
        "/api/leads/check-availability/jobs/x/cancel",
        "/api/check-availability",
        "/api/check-availability-rr",
    ):
        assert resolve(path).func.view_class.rate_limit_group == "availability"


def test_the_availability_rate_limit_applies(api, line, settings):
    from django.core.cache import cache

    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "availability": 2}
    cache.clear()
    statuses = [
        api.get("/api/check-availability", {"address": "+14155550132"}).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


# No active line on the background path


@override_settings(AVAILABILITY_SYNC_MAX_LEADS=2)
def test_a_background_batch_without_a_line_is_400_and_marks_the_leads(api, acme):
    leads = [lead(acme, phone=f"+1415555{i:04d}") for i in range(100, 103)]
    the_list = LeadList.objects.create(workspace=acme, name="Prospects")
    for member in leads:
        ListMembership.objects.create(lead_list=the_list, lead=member)
    for body in ({"leadIds": [x.pk for x in leads]}, {"listId": the_list.pk}):
        Lead.objects.update(availability_status="")
        response = api.post("/api/leads/check-availability", body, format="json")
        assert (response.status_code, response.json()) == (400, NO_LINE)
        statuses = set(Lead.objects.values_list("availability_status", flat=True))
        assert statuses == {"no_active_line"}
    assert not AvailabilityJob.objects.exists()


# `success` follows technical failure


def test_success_is_false_when_the_check_failed(api, acme, line):
    person = lead(acme, phone="+14155559999")
    body = api.get(f"/api/leads/check-availability?id={person.pk}").json()
    assert body == {"success": False, "leadId": person.pk, "available": False, "status": "error"}
    body = api.post(
        "/api/leads/check-availability", {"address": "+14155559999"}, format="json"
    ).json()
    assert body == {
        "success": False, "address": "+14155559999", "available": False, "status": "error",
    }  # fmt: skip


# Wait budget of the synchronous paths


@pytest.fixture
def gap_never_passes(monkeypatch):
    """Sleeping for a line's gap takes no time, so the gap outlasts any wait budget."""
    monkeypatch.setattr(availability, "_sleep", lambda seconds: None)


def test_addresses_left_unchecked_by_the_wait_budget_are_reported_not_lost(
    api, acme, make_line, relay, gap_never_passes
):
    make_line(acme, check_gap_seconds=3)
    addresses = ["+14155550132", "+14155550134", "a@icloud.com"]
    response = api.post("/api/check-availability", {"addresses": addresses}, format="json")
    assert response.status_code == 200
    busy = {
        "available": False,
        "status": "error",
        "error": "Not checked: every line stayed busy; retry shortly",
        "code": "LINES_BUSY",
    }
    assert response.json() == {
        "success": True,
        "results": [
            {"address": "+14155550132", "available": True, "status": "available"},
            {"address": "+14155550134", **busy},
            {"address": "a@icloud.com", **busy},
        ],
    }
    assert availability_requests(relay) == 1
    # The answer paid for was cached: a retry asks only about the rest.
    response = api.get("/api/check-availability", {"address": "+14155550132"})
    assert response.json()["available"] is True
    assert availability_requests(relay) == 1


def test_one_address_left_unchecked_is_not_a_503(api, acme, make_line, gap_never_passes):
    make_line(acme, check_gap_seconds=3)
    api.get("/api/check-availability", {"address": "+14155550132"})
    response = api.get("/api/check-availability", {"address": "+14155550134"})
    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["available"], body["code"]) == (False, False, "LINES_BUSY")
    response = api.post("/api/leads/check-availability", {"address": "a@me.com"}, format="json")
    assert response.status_code == 200
    assert (response.json()["success"], response.json()["code"]) == (False, "LINES_BUSY")


def test_quota_running_out_mid_batch_keeps_the_answers(api, acme, make_line, relay):
    make_line(acme, daily_availability_checks_limit=1)
    response = api.post(
        "/api/check-availability", {"addresses": ["+14155550132", "a@icloud.com"]}, format="json"
    )
    assert response.status_code == 200
    first, second = response.json()["results"]
    assert (first["available"], second["status"], second["code"]) == (
        True, "error", "QUOTA_EXHAUSTED",
    )  # fmt: skip
    # Nothing answerable at all: the documented 429.
    response = api.post(
        "/api/check-availability", {"addresses": ["a@icloud.com", "b@icloud.com"]}, format="json"
    )
    assert response.status_code == 429
    assert response["Retry-After"] == "3600"
    assert response.json()["reason"] == "Daily availability check quota exhausted"


def test_a_lead_left_unfinished_by_the_wait_budget_keeps_its_status(
    api, acme, make_line, relay, gap_never_passes
):
    make_line(acme, check_gap_seconds=3)
    done = lead(acme, phone="+14155550132")
    person = lead(acme, phone="+14155550131", email="p@icloud.com", availability_status="available")
    response = api.post(
        "/api/leads/check-availability", {"leadIds": [done.pk, person.pk]}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["checked"], body["successful"], body["errors"]) == (2, 1, 1)
    assert body["results"] == [
        {"leadId": done.pk, "available": True, "status": "available"},
        {
            "leadId": person.pk,
            "available": False,
            "status": "error",
            "error": "Not checked: every line stayed busy; retry shortly",
            "code": "LINES_BUSY",
        },
    ]
    person.refresh_from_db()
    assert person.availability_status == "available"
    response = api.get(f"/api/leads/check-availability?id={person.pk}")
    assert response.status_code == 200
    assert (response.json()["success"], response.json()["code"]) == (False, "LINES_BUSY")


def test_round_robin_check_that_could_not_decide_keeps_the_documented_reason(api, line):
    response = api.post(
        "/api/check-availability-rr",
        {"phones": ["+14155559999"], "emails": ["x@example.com"]},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("available", "reason", "status")} == {
        "available": False, "reason": "Contact not available on iMessage", "status": "error",
    }  # fmt: skip
    assert body["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phones": ["not a phone"]}, "phones"),
        ({"phones": ["+14155550132"], "emails": ["x@", "y@icloud.com"]}, "emails.0"),
        ({"phones": "+14155550132"}, "phones"),
        ({"emails": {"a": 1}}, "emails"),
    ],
)
def test_round_robin_check_rejects_bad_input_with_both_body_shapes(api, line, relay, body, field):
    response = api.post("/api/check-availability-rr", body, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["available"] is False
    assert body["reason"] == body["error"]
    assert body["error"].startswith(field)
    assert body["code"] == "VALIDATION_ERROR"
    assert availability_requests(relay) == 0


def test_the_lead_shows_the_address_that_answered(api, acme, line):
    person = lead(acme, phone="+14155550131", email="p@icloud.com")
    api.get(f"/api/leads/check-availability?id={person.pk}")
    body = api.get(f"/api/leads/{person.pk}").json()["lead"]
    assert (body["availabilityStatus"], body["availabilityAddress"]) == (
        "available", "p@icloud.com",
    )  # fmt: skip
