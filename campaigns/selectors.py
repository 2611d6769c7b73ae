"""Reads on campaigns, scoped to a workspace. Stats are counted from the messages
themselves (no counters to drift under concurrent updates), for a whole page of
campaigns in two grouped queries."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Count, F, Prefetch, QuerySet

from campaigns.models import Campaign, Enrollment, Step
from campaigns.sequencing import HELD
from messaging.models import Message
from tuco.errors import NotFound
from tuco.ids import looks_like_id

STAT_KEYS = (
    "total",
    "pending",
    "sent",
    "delivered",
    "opened",
    "replied",
    "failed",
    "fallback",
    "cancelled",
    "stalled",
)
# Message status -> the stats it counts towards (sent includes what went further).
_COUNTS_AS = {
    "pending": ("pending",),
    "scheduled": ("pending",),
    "sending": ("pending",),
    "sent": ("sent",),
    "delivered": ("sent", "delivered"),
    "read": ("sent", "delivered", "opened"),
    "failed": ("failed",),
    "fallback": ("fallback",),
    "cancelled": ("cancelled",),
}


def campaign_list(*, workspace, status: str | None = None) -> QuerySet[Campaign]:
    campaigns = Campaign.objects.filter(workspace=workspace)
    if status:
        campaigns = campaigns.filter(status=status)
    return campaigns.order_by("-created_at", "-pk").prefetch_related(
        Prefetch("steps", queryset=Step.objects.order_by("position")), "lines"
    )


def campaign_get(*, workspace, campaign_id) -> Campaign:
    campaign = None
    if looks_like_id(campaign_id):
        campaign = campaign_list(workspace=workspace).filter(pk=campaign_id).first()
    if campaign is None:
        raise NotFound("Campaign not found")
    return campaign


def campaign_stats(campaign_ids) -> dict[str, dict[str, int]]:
    """{campaign id: {total, pending, sent, delivered, opened, replied, failed, fallback,
    cancelled}} for these campaigns, in two queries whatever their number."""
    ids = list(campaign_ids)
    stats = defaultdict(lambda: dict.fromkeys(STAT_KEYS, 0))
    if not ids:
        return {}
    rows = (
        Message.objects.filter(campaign_id__in=ids)
        .values_list("campaign_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for campaign_id, status, n in rows:
        entry = stats[campaign_id]
        entry["total"] += n
        for key in _COUNTS_AS.get(status, ()):
            entry[key] += n
    # In a completed campaign, what is still held waits behind a failed step for
    # `retry_failed`: reported as stalled, not pending.
    completed = Campaign.objects.filter(pk__in=ids, status=Campaign.Status.COMPLETED)
    stalled = (
        Message.objects.filter(
            campaign_id__in=completed.values("pk"), status="scheduled", due_at=HELD
        )
        .values_list("campaign_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for campaign_id, n in stalled:
        stats[campaign_id]["pending"] -= n
        stats[campaign_id]["stalled"] = n
    # A lead counts as replied once it answered after it was enrolled.
    replied = (
        Enrollment.objects.filter(campaign_id__in=ids, lead__replied_at__gte=F("enrolled_at"))
        .values_list("campaign_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for campaign_id, n in replied:
        stats[campaign_id]["replied"] = n
    return {campaign_id: stats[campaign_id] for campaign_id in ids}
