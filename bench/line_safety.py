"""Line safety under a campaign: two lines go bad half-way, how fast are they out?

Ten lines, each on its own relay simulator over real HTTP, send a one-step
campaign to BENCH_LINE_SAFETY_LEADS leads (5,000). The clock is injected
(django.utils.timezone.now is patched) and moves one minute per round, so a day
of sending passes in seconds. Each round does what the workers do in that minute:
the campaign tick, the dispatcher and its sends, a poll of every relay for
receipts, the undelivered sweep and a health check of every line.

Half-way through the sends, one line's relay starts accepting sends that are never
delivered (`silent_undelivered`) and another's Mac is signed out of iMessage. The
run is done twice, with line safety on and off. Reported per run:

- bad_sends_silent / bad_sends_signed_out: messages the relay accepted (or was
  asked to send) on each bad line after it went bad, before it was out of rotation
  (goal: at most 10 silent, at most 3 signed out);
- detect_min_silent / detect_min_signed_out: simulated minutes from going bad to
  quarantine;
- leads_moved: campaign leads taken off the two bad lines;
- duplicates: recipients who got the same text twice (must be 0);
- delivered: messages delivered at the end.

The run uses the product's default line safety settings (shown in the table); the
lines do not warm up and each sends at most one message a minute.
BENCH_LINE_SAFETY_MAX_MINUTES stops a run early (for profiling a round);
BENCH_LINE_SAFETY_RUNS=on (or off) does one run only.
Postgres (DATABASE_URL, default the bench database); the workspace is deleted
afterwards.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from unittest import mock

LEADS = int(os.environ.get("BENCH_LINE_SAFETY_LEADS", "5000"))
MAX_MINUTES = int(os.environ.get("BENCH_LINE_SAFETY_MAX_MINUTES", "0")) or LEADS * 2
# Which runs: "on,off" (both, one after the other), or one of them (two processes on
# two databases run them side by side).
RUNS = os.environ.get("BENCH_LINE_SAFETY_RUNS", "on,off").split(",")
LINES = 10
DAILY_CAP = 600
PASSWORD = "bench-secret"
START = datetime(2026, 3, 4, 14, 0, tzinfo=UTC)


class _Clock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def run() -> list[dict]:
    from django.db import connection

    if connection.vendor != "postgresql":
        return [{"note": "needs Postgres (DATABASE_URL)"}]
    # Every eager task logs a line at INFO: thousands a simulated minute.
    logging.getLogger("celery").setLevel(logging.WARNING)
    return [_run(safety_on=run == "on") for run in RUNS]


def _run(*, safety_on: bool) -> dict:
    from django.conf import settings
    from django.core.cache import cache

    from bench._seed import bench_workspace, copy_leads, delete_workspace_rows
    from campaigns import services as campaign_services
    from campaigns.models import Enrollment
    from campaigns.services import campaigns_tick
    from leads.models import LeadList
    from lines.models import Line
    from lines.relay import clear_client_cache
    from lines.services import line_create, line_health_check, line_policy_update
    from lines.simulator import RelaySimulator
    from messaging.dispatch import dispatch_due
    from messaging.inbound import relay_poll_line
    from messaging.models import Message
    from messaging.tasks import mark_undelivered_messages
    from tuco.celery import app as celery_app

    overrides = {"LINE_SAFETY_ENABLED": safety_on}
    saved = {name: getattr(settings, name) for name in overrides}
    for name, value in overrides.items():
        setattr(settings, name, value)
    celery_app.conf.task_always_eager = True
    cache.clear()
    clock = _Clock(START)
    sims = [RelaySimulator(password=PASSWORD, delivery_delay=0).start() for _ in range(LINES)]
    workspace, _ = bench_workspace(f"line safety {'on' if safety_on else 'off'}")
    try:
        # The relays stamp their messages (dateCreated, dateDelivered) on the same clock.
        with (
            mock.patch("django.utils.timezone.now", clock),
            mock.patch("lines.simulator._now_ms", lambda: int(clock.now.timestamp() * 1000)),
        ):
            lead_list = LeadList.objects.create(workspace=workspace, name="Bench list")
            copy_leads(workspace, lead_list, LEADS)
            line_policy_update(workspace=workspace, warmup_days=0)
            lines = [
                line_create(
                    workspace=workspace,
                    server_url=sim.url,
                    relay_password=PASSWORD,
                    phone=f"+1415555{1000 + i:04d}",
                    # A little more than a line can send in the rest of the day
                    # (14:00 to midnight, one a minute): the spread over the window
                    # then releases first messages about as fast as they can go.
                    daily_new_conversations_limit=DAILY_CAP,
                    daily_total_messages_limit=DAILY_CAP,
                    daily_availability_checks_limit=100_000,
                    device_gap_seconds=60,
                    contact_gap_seconds=0,
                    check_gap_seconds=0,
                )
                for i, sim in enumerate(sims)
            ]
            # created_at's default is the real clock (bound before the patch); the poll
            # reads a relay's history from the line's creation on.
            Line.objects.filter(workspace=workspace).update(
                health_status="healthy", created_at=clock.now
            )
            lines = list(Line.objects.filter(workspace=workspace).order_by("phone"))
            campaign = campaign_services.campaign_create(
                workspace=workspace,
                name="Bench",
                steps=[campaign_services.StepSpec("Hi {firstName|there}", delay=0)],
                list_id=lead_list.pk,
                settings=campaign_services.CampaignSettings(
                    send_window_start="00:00",
                    send_window_end="23:59",
                    allowed_days=[0, 1, 2, 3, 4, 5, 6],
                ),
            )
            campaign_services.campaign_start(workspace=workspace, campaign_id=campaign.pk)
            # Round robin gives line i the leads i, i + 10, ...: the even lines carry
            # the leads on iMessage (the simulator's rule), so both bad lines are even.
            silent, signed_out = lines[0], lines[2]
            went_bad_at = None
            bad_sent = {}
            out_at: dict[str, datetime] = {}
            bad_enrollments: set[str] = set()
            started = time.perf_counter()
            for _ in range(MAX_MINUTES):
                campaigns_tick()
                while dispatch_due(limit=100).claimed:
                    pass
                for line in lines:
                    relay_poll_line(line=Line.objects.get(pk=line.pk))
                mark_undelivered_messages()  # the sweep and the hold of beat's task
                for line in lines:
                    line_health_check(line=Line.objects.get(pk=line.pk))
                total_sent = sum(len(sim.sent) for sim in sims)
                if went_bad_at is None and total_sent >= LEADS // 4:
                    # Half-way through the sends (about half the leads are on iMessage).
                    went_bad_at = clock.now
                    bad_enrollments = set(
                        Enrollment.objects.filter(
                            campaign_id=campaign.pk, line_id__in=[silent.pk, signed_out.pk]
                        ).values_list("lead_id", flat=True)
                    )
                    bad_sent = {silent.pk: len(sims[0].sent), signed_out.pk: _attempts(sims[2])}
                    sims[0].configure(silent_undelivered=True)
                    sims[2].configure(imessage_signed_in=False)
                if went_bad_at is not None:
                    for line, sim in ((silent, sims[0]), (signed_out, sims[2])):
                        if line.pk not in out_at and not Line.objects.get(pk=line.pk).is_usable:
                            out_at[line.pk] = clock.now
                            bad_sent[line.pk] = (
                                len(sim.sent) if line is silent else _attempts(sim)
                            ) - bad_sent[line.pk]
                waiting = Message.objects.filter(
                    workspace=workspace, status__in=["pending", "scheduled", "sending"]
                ).exclude(line_id__in=[silent.pk, signed_out.pk] if not safety_on else [])
                if went_bad_at is not None and not waiting.exists():
                    break
                clock.now += timedelta(minutes=1)
            elapsed = time.perf_counter() - started
            for line, sim in ((silent, sims[0]), (signed_out, sims[2])):
                if line.pk not in out_at and bad_sent:
                    bad_sent[line.pk] = (
                        len(sim.sent) if line is silent else _attempts(sim)
                    ) - bad_sent[line.pk]
            moved = Enrollment.objects.filter(
                campaign_id=campaign.pk, lead_id__in=bad_enrollments
            ).exclude(line_id__in=[silent.pk, signed_out.pk])
            texts = Counter((m["handle"]["address"], m["text"]) for sim in sims for m in sim.sent)

            def minutes(line) -> int | None:
                if line.pk not in out_at or went_bad_at is None:
                    return None
                return int((out_at[line.pk] - went_bad_at).total_seconds() // 60)

            return {
                "safety": "on" if safety_on else "off",
                "leads": LEADS,
                "sim_minutes": int(
                    (clock.now - datetime(2026, 3, 4, 14, 0, tzinfo=UTC)).total_seconds() // 60
                ),
                "bad_sends_silent": bad_sent.get(silent.pk),
                "bad_sends_signed_out": bad_sent.get(signed_out.pk),
                "detect_min_silent": minutes(silent),
                "detect_min_signed_out": minutes(signed_out),
                "leads_moved": moved.count(),
                "duplicates": sum(1 for n in texts.values() if n > 1),
                "delivered": Message.objects.filter(
                    workspace=workspace, status__in=["delivered", "read"]
                ).count(),
                "undelivered_after_min": settings.UNDELIVERED_AFTER_MINUTES,
                "quarantine_after": settings.LINE_QUARANTINE_AFTER_FAILURES,
                "unconfirmed_limit": settings.LINE_UNCONFIRMED_SENDS_LIMIT,
                "seconds": round(elapsed, 1),
            }
    finally:
        for sim in sims:
            sim.stop()
        clear_client_cache()
        for name, value in saved.items():
            setattr(settings, name, value)
        from messaging.models import Conversation

        # Sending made conversations, which the shared clean-up does not expect.
        Conversation.objects.filter(workspace=workspace).delete()
        delete_workspace_rows(workspace)


def _attempts(sim) -> int:
    """Sends the relay was asked for (a signed-out Mac accepts none of them)."""
    by_endpoint = sim.stats["by_endpoint"]
    return by_endpoint.get("chat_new", 0) + by_endpoint.get("message_text", 0)
