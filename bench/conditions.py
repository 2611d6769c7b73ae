"""Campaigns with stop conditions, a branch step and an API tool condition.

Reported:

- start: starting a campaign of BENCH_CONDITIONS_LEADS leads (100,000) whose
  second step has two stop conditions and whose third step is a branch
  (replied / default): the time to schedule it (enrollments and held messages);
- stop rule (api_tool): BENCH_CONDITIONS_DUE leads (10,000) whose second step is
  due, with an `api_tool` stop condition answered by a local HTTP server in a
  process of its own (bench._tool_api: keep-alive, no delay unless
  BENCH_TOOL_LATENCY_MS): pacing rounds (`campaigns_tick`) until
  every lead is judged, in leads per second, and the number of calls the server
  received (one per lead: answers are kept per lead and step), also after one
  more round;
- branch (api_tool): the same leads at a branch step whose first condition is
  that tool.

Postgres only (DATABASE_URL, default the bench database). The workspaces are
deleted afterwards.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import timedelta
from unittest import mock

from bench._processes import free_port, start, stop, wait_http

LEADS = int(os.environ.get("BENCH_CONDITIONS_LEADS", "100000"))
DUE = int(os.environ.get("BENCH_CONDITIONS_DUE", "10000"))
MAX_ROUNDS = 200


class ToolServer:
    """A customer's API (bench._tool_api) in a process of its own, HTTP/1.1 with
    keep-alive: answers {"data": {"status": "active"}} and counts calls."""

    def __init__(self):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process = None

    @property
    def calls(self) -> int:
        import requests

        return requests.get(self.url + "/calls", timeout=10).json()["calls"]

    def __enter__(self):
        port = self.url.rsplit(":", 1)[1]
        log = os.path.join(tempfile.gettempdir(), "tuco-bench-tool-api.log")
        self.process = start([sys.executable, "-m", "bench._tool_api", port], dict(os.environ), log)
        wait_http(self.url + "/calls")
        return self

    def __exit__(self, *exc):
        stop(self.process)


def _delete(workspace) -> None:
    from bench._seed import delete_workspace_rows
    from campaigns.models import ApiToolRun, BranchDecision

    ApiToolRun.objects.filter(tool__workspace=workspace).delete()
    BranchDecision.objects.filter(campaign__workspace=workspace).delete()
    delete_workspace_rows(workspace)


def _quiet():
    """Work queued after commit (the pacing tick, sends) is left out."""
    return (
        mock.patch("campaigns.services._tick_on_commit"),
        mock.patch("messaging.dispatch._queue_sends"),
        mock.patch("messaging.services.dispatch_on_commit"),
    )


def _lines(workspace, count=10):
    from lines.models import Line

    for i in range(count):
        Line.objects.create(
            workspace=workspace,
            phone=f"+1415555{1000 + i:04d}",
            server_url="http://127.0.0.1:9",
            health_status="healthy",
            daily_new_conversations_limit=1_000_000,
            daily_total_messages_limit=1_000_000,
            device_gap_seconds=0,
            contact_gap_seconds=0,
        )


def _start(label: str, leads: int, steps):
    """A started campaign of `leads` leads; (workspace, campaign, seconds to start)."""
    from django.db import connection

    from bench._seed import bench_workspace, copy_leads
    from campaigns import services
    from leads.models import LeadList

    workspace, _ = bench_workspace(label)
    try:
        lead_list = LeadList.objects.create(workspace=workspace, name="Bench list")
        copy_leads(workspace, lead_list, leads)
        _lines(workspace)
        campaign = services.campaign_create(
            workspace=workspace, name="Bench", steps=steps(workspace), list_id=lead_list.pk
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        a, b, c = _quiet()
        with a, b, c:
            started = time.perf_counter()
            services.campaign_start(workspace=workspace, campaign_id=campaign.pk)
            seconds = time.perf_counter() - started
    except BaseException:
        _delete(workspace)
        raise
    return workspace, campaign, seconds


def _branch_steps(first_condition):
    from campaigns.steps import BranchSpec, StepSpec

    return StepSpec(
        kind="branch",
        delay=1,
        delay_unit="days",
        branches=(
            BranchSpec(first_condition, (StepSpec("Thanks", delay=0, delay_unit="minutes"),)),
            BranchSpec(
                _rule(type="default"), (StepSpec("Last note", delay=0, delay_unit="minutes"),)
            ),
        ),
    )


def _rule(**fields):
    from campaigns.conditions import Rule

    return Rule(id=f"r{time.time_ns()}", **fields)


def bench_start() -> dict:
    from campaigns.steps import StepSpec
    from messaging.models import Message

    def steps(workspace):
        stop = (
            _rule(type="replied_keyword", keyword="stop"),
            _rule(type="tag_exists", tag="Customer"),
        )
        return [
            StepSpec("Hi {firstName|there}", delay=0, delay_unit="minutes"),
            StepSpec("Following up", delay=2, delay_unit="days", stop_rules=stop),
            _branch_steps(_rule(type="replied")),
        ]

    workspace, campaign, seconds = _start("conditions start", LEADS, steps)
    try:
        messages = Message.objects.filter(campaign_id=campaign.pk).count()
    finally:
        _delete(workspace)
    return {
        "bench": "conditions: start (branch + 2 stop rules)",
        "leads": LEADS,
        "messages": messages,
        "seconds": round(seconds, 2),
        "per_second": round(LEADS / seconds),
        "note": "goal < 15 s",
    }


def _make_due(campaign, now) -> None:
    """Step 1 reached every lead two days ago."""
    from messaging.models import Message

    Message.objects.filter(campaign_id=campaign.pk, step_index=0).update(
        status="sent", held=False, sent_at=now - timedelta(days=2), updated_at=now
    )


def _rounds(campaign, now, judged) -> tuple[int, float]:
    """Pacing rounds until `judged()` covers every lead; (rounds, seconds)."""
    from campaigns import services

    a, b, c = _quiet()
    rounds = 0
    started = time.perf_counter()
    with a, b, c:
        while judged() < DUE and rounds < MAX_ROUNDS:
            services.campaigns_tick(now=now)
            rounds += 1
    return rounds, time.perf_counter() - started


def bench_tool(kind: str, server: ToolServer) -> dict:
    from django.utils import timezone

    from campaigns import services
    from campaigns.models import ApiToolRun, BranchDecision
    from campaigns.steps import StepSpec
    from campaigns.tools import tool_save
    from messaging.models import Message

    tools = {}

    def steps(workspace):
        tools["tool"] = tool = tool_save(
            workspace=workspace,
            name="Plan status",
            method="GET",
            url=server.url + "/status?phone={phone}",
            response_mapping="data.status",
        )
        condition = _rule(type="api_tool", tool_id=tool.pk, operator="eq", value="churned")
        first = StepSpec("Hi {firstName|there}", delay=0, delay_unit="minutes")
        if kind == "branch":
            condition = _rule(type="api_tool", tool_id=tool.pk, operator="eq", value="active")
            return [first, _branch_steps(condition)]
        return [
            first,
            StepSpec("Following up", delay=1, delay_unit="days", stop_rules=(condition,)),
        ]

    workspace, campaign, _ = _start(f"conditions {kind}", DUE, steps)
    try:
        now = timezone.now()
        _make_due(campaign, now)
        before = server.calls
        if kind == "branch":

            def judged():
                return BranchDecision.objects.filter(campaign_id=campaign.pk).count()
        else:

            def judged():
                return (
                    DUE
                    - Message.objects.filter(
                        campaign_id=campaign.pk, step_index=1, status="scheduled", held=True
                    ).count()
                )

        rounds, seconds = _rounds(campaign, now, judged)
        calls = server.calls - before
        a, b, c = _quiet()
        with a, b, c:
            services.campaigns_tick(now=now)
        calls_after = server.calls - before
        runs = ApiToolRun.objects.filter(tool_id=tools["tool"].pk).count()
        done = judged()
    finally:
        _delete(workspace)
    return {
        "bench": f"conditions: {kind} (api_tool) over due leads",
        "leads": done,
        "rounds": rounds,
        "seconds": round(seconds, 2),
        "per_second": round(done / seconds) if seconds else None,
        "tool_calls": calls,
        "note": f"calls after one more round {calls_after:,}; kept runs {runs:,}",
    }


def run() -> list[dict]:
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        return [{"bench": "conditions", "note": "needs Postgres (DATABASE_URL)"}]
    settings.API_TOOLS_ALLOW_PRIVATE_TARGETS = True
    settings.API_TOOLS_CALLS_PER_MINUTE = 10_000_000
    rows = [bench_start()]
    with ToolServer() as server:
        rows.append(bench_tool("stop rule", server))
        rows.append(bench_tool("branch", server))
    return rows
