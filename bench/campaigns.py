"""Starting a campaign on a big list, and claiming its due messages.

Builds a workspace with BENCH_CAMPAIGN_LEADS leads (100,000) in one list and
BENCH_CAMPAIGN_LINES lines (10, caps raised, gaps 0), creates a 3-step campaign
and starts it. Reported:

- start: the time to enroll the whole list, i.e. write the enrollments and one
  scheduled message per step (300,000 rows), and the process's peak RSS growth
  (the list is streamed in pages, so memory stays flat whatever its size);
- tick: one pacing round (line assignment, follow-up sweep, the per-line gate
  releasing first steps), and the stats read for the campaign;
- claim: the dispatcher claiming and deciding the released campaign messages
  (`dispatch_due`, batches of 100), in messages per second. Sends are not
  performed (the send task queue is bypassed), so this is the claim path alone.

Postgres only (DATABASE_URL, default the bench database). The workspace is
deleted afterwards.
"""

from __future__ import annotations

import os
import resource
import time
from unittest import mock

LEADS = int(os.environ.get("BENCH_CAMPAIGN_LEADS", "100000"))
LINES = int(os.environ.get("BENCH_CAMPAIGN_LINES", "10"))
STEPS = [
    ("Hi {firstName|there}", 0, "minutes"),
    ("Following up", 2, "days"),
    ("Last note", 3, "days"),
]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run() -> list[dict]:
    from django.db import connection

    from bench._seed import bench_workspace, copy_leads, delete_workspace_rows
    from campaigns import services
    from campaigns.selectors import campaign_stats
    from leads.models import LeadList
    from lines.models import Line, webhook_token_hash
    from messaging.dispatch import dispatch_due
    from messaging.models import Message

    if connection.vendor != "postgresql":
        return [{"bench": "campaigns", "note": "needs Postgres (DATABASE_URL)"}]

    workspace, _ = bench_workspace("campaigns")
    rows = []
    try:
        lead_list = LeadList.objects.create(workspace=workspace, name="Bench list")
        started = time.perf_counter()
        copy_leads(workspace, lead_list, LEADS)
        setup_seconds = time.perf_counter() - started
        lines = [
            Line(
                workspace=workspace,
                phone=f"+1415555{1000 + i:04d}",
                server_url="http://127.0.0.1:9",
                health_status="healthy",
                daily_new_conversations_limit=100_000,
                daily_total_messages_limit=100_000,
                device_gap_seconds=0,
                contact_gap_seconds=0,
            )
            for i in range(LINES)
        ]
        # bulk_create skips Line.save, which derives the callback token's hash.
        for line in lines:
            line.webhook_token_hash = webhook_token_hash(line.webhook_token)
        Line.objects.bulk_create(lines)
        campaign = services.campaign_create(
            workspace=workspace,
            name="Bench",
            steps=[services.StepSpec(m, delay=d, delay_unit=u) for m, d, u in STEPS],
            list_id=lead_list.pk,
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

        # Work queued after commit (the pacing tick, sends) is left out: measured below.
        with (
            mock.patch("campaigns.services._tick_on_commit"),
            mock.patch("messaging.dispatch._queue_sends"),
            mock.patch("messaging.services.dispatch_on_commit"),
        ):
            rss_before = _rss_mb()
            started = time.perf_counter()
            services.campaign_start(workspace=workspace, campaign_id=campaign.pk)
            start_seconds = time.perf_counter() - started
            rss_growth = _rss_mb() - rss_before
            messages = Message.objects.filter(campaign_id=campaign.pk).count()
            rows.append(
                {
                    "bench": "campaigns: start (enroll list)",
                    "leads": LEADS,
                    "messages": messages,
                    "seconds": round(start_seconds, 2),
                    "per_second": round(messages / start_seconds),
                    "peak_rss_growth_mb": round(rss_growth, 1),
                    "setup_leads_s": round(setup_seconds, 2),
                }
            )

            started = time.perf_counter()
            released = services.campaigns_tick()
            tick_seconds = time.perf_counter() - started
            started = time.perf_counter()
            stats = campaign_stats([campaign.pk])[campaign.pk]
            stats_ms = (time.perf_counter() - started) * 1000
            rows.append(
                {
                    "bench": "campaigns: pacing tick",
                    "messages": len(released),
                    "seconds": round(tick_seconds, 2),
                    "stats_read_ms": round(stats_ms, 1),
                    "note": f"pending {stats['pending']:,} of {stats['total']:,}",
                }
            )

            claimed = 0
            started = time.perf_counter()
            while True:
                batch = dispatch_due(limit=100).claimed
                claimed += batch
                if not batch:
                    break
            claim_seconds = time.perf_counter() - started
            rows.append(
                {
                    "bench": "campaigns: dispatcher claim",
                    "messages": claimed,
                    "seconds": round(claim_seconds, 2),
                    "per_second": round(claimed / claim_seconds) if claim_seconds else None,
                }
            )
    finally:
        delete_workspace_rows(workspace)
    return rows
