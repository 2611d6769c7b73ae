"""The dashboard's Leads page with 100,000 leads in the workspace.

Builds a workspace with BENCH_PAGE_LEADS leads (100,000, COPY) in one list, with
a mix of availability statuses, names, emails and companies, then renders the
Leads page through Django's test client (the whole request: middleware,
session, queries, template) for the URLs an operator uses: first page, a deep
page, an availability filter, a list filter, both, and a search. Reported per
URL: the median and the slowest of five renders after a warm-up, and the
number of queries. Goal: under 300 ms server time. Postgres only.
"""

from __future__ import annotations

import os
import statistics
import time

LEADS = int(os.environ.get("BENCH_PAGE_LEADS", "100000"))
RENDERS = 5
GOAL_MS = 300
STATUSES = ["", "available", "unavailable", "error"]
QUERIES = [
    "",
    "?page=100&limit=100",
    "?availability=available",
    "?list={list_id}",
    "?list={list_id}&availability=error&page=50",
    "?search=lead4242",
]


def _fields(i: int) -> dict:
    return {
        "last_name": f"Last{i}",
        "email": f"lead{i}@example.com",
        "company_name": f"Company {i % 997}",
        "availability_status": STATUSES[i % len(STATUSES)],
    }


def run() -> list[dict]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench._seed import bench_workspace, copy_leads, delete_workspace_rows
    from leads.models import LeadList
    from tuco.models import Membership

    if connection.vendor != "postgresql":
        return [{"bench": "leads_page", "note": "needs Postgres (DATABASE_URL)"}]

    workspace, _ = bench_workspace("leads page")
    rows = []
    try:
        lead_list = LeadList.objects.create(workspace=workspace, name="Everyone")
        copy_leads(workspace, lead_list, LEADS, fields=_fields)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE leads_lead")
            cursor.execute("ANALYZE leads_listmembership")
        client = Client()
        client.force_login(workspace.memberships.get(role=Membership.Role.OWNER).user)
        for query in QUERIES:
            url = "/leads/" + query.format(list_id=lead_list.pk)
            client.get(url)  # warm caches
            timings = []
            for _ in range(RENDERS):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = client.get(url)
                    timings.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}")
            rows.append(
                {
                    "bench": "leads page: " + (query.replace("{list_id}", "L") or "first page"),
                    "leads": LEADS,
                    "median_ms": round(statistics.median(timings), 1),
                    "max_ms": round(max(timings), 1),
                    "queries": len(queries.captured_queries),
                    "goal_ms": GOAL_MS,
                }
            )
    finally:
        delete_workspace_rows(workspace)
    return rows
