"""Claims that only hold across connections, checked against real Postgres (and Redis)."""

import pytest
from django.conf import settings
from django.test import override_settings

from leads.models import Lead, LeadIdentifier, LeadList, ListMembership
from leads.services import lead_import
from tests import threads
from tests.conftest import api_client
from tuco import ratelimit

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.IS_POSTGRES, reason="needs Postgres (set DATABASE_URL)"),
]


def run_in_threads(target, count):
    outcomes = threads.run_in_threads(target, count)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    return [None if isinstance(o, Exception) else o for o in outcomes], errors


def test_concurrent_imports_of_overlapping_leads_do_not_clash(acme):
    lead_list = LeadList.objects.create(workspace=acme, name="Shared")
    # Every thread imports the same 300 people, in a different order and format.
    people = [(f"+1202555{i:04d}", f"p{i}@example.com") for i in range(300)]

    def import_(index):
        rows = [
            {"phone": phone if index % 2 else phone[2:], "email": email.upper()}
            for phone, email in (people[index:] + people[:index])
        ]
        return lead_import(workspace=acme, rows=rows, lead_list=lead_list, batch_size=50)

    results, errors = run_in_threads(import_, 4)
    assert errors == []
    assert sum(r.saved_count for r in results) == 300
    assert sum(r.duplicate_count for r in results) == 900
    assert Lead.objects.filter(workspace=acme).count() == 300
    assert LeadIdentifier.objects.filter(workspace=acme).count() == 600
    assert ListMembership.objects.filter(lead_list=lead_list).count() == 300


def test_concurrent_uploads_through_the_api_each_succeed(acme):
    rows = [{"phone": f"+1415555{i:04d}"} for i in range(200)]

    def post(index):
        return api_client(acme.raw_key).post("/api/leads", {"leads": rows}, format="json")

    results, errors = run_in_threads(post, 3)
    assert errors == []
    assert sorted(r.status_code for r in results) == [200, 200, 201]
    assert sum(r.json()["savedCount"] for r in results) == 200
    assert Lead.objects.filter(workspace=acme).count() == 200


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (set REDIS_URL)")
def test_rate_limit_is_exact_under_concurrency(acme):
    ratelimit.reset_all()
    limits = {**settings.RATE_LIMITS, "default": 5}
    with override_settings(RATE_LIMITS=limits):

        def get(index):
            return api_client(acme.raw_key).get("/api/leads")

        results, errors = run_in_threads(get, 20)
    ratelimit.reset_all()
    assert errors == []
    statuses = [r.status_code for r in results]
    assert statuses.count(200) == 5
    assert statuses.count(429) == 15
    for response in results:
        if response.status_code == 429:
            assert response.json() == {"error": "Rate limit exceeded", "code": "RATE_LIMITED"}
            assert 1 <= int(response["Retry-After"]) <= 12


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (set REDIS_URL)")
def test_a_rate_limited_upload_changes_nothing(acme):
    ratelimit.reset_all()
    limits = {**settings.RATE_LIMITS, "default": 1}
    client = api_client(acme.raw_key)
    with override_settings(RATE_LIMITS=limits):
        first = client.post("/api/leads", {"leads": [{"phone": "+12025550001"}]}, format="json")
        second = client.post("/api/leads", {"leads": [{"phone": "+12025550002"}]}, format="json")
    ratelimit.reset_all()
    assert (first.status_code, second.status_code) == (201, 429)
    assert list(Lead.objects.values_list("phone", flat=True)) == ["+12025550001"]
