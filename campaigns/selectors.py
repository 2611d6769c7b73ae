"""Reads on campaigns, scoped to a workspace. Stats are counted from the messages
themselves (no counters to drift under concurrent updates), for a whole page of
campaigns in two grouped queries."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Count, Prefetch, Q, QuerySet

from campaigns.models import ApiTool, BranchDecision, Campaign, Step
from campaigns.sequencing import AFTER_FAILURE, STOP_CONDITION, awaiting_branch
from messaging.models import InboundMessage, Message
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
    "stopped",
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
        .annotate(
            n=Count("pk"),
            stalled=Count("pk", filter=Q(cancel_reason=AFTER_FAILURE)),
            stopped=Count("pk", filter=Q(cancel_reason__startswith=STOP_CONDITION)),
        )
        .order_by()
    )
    for campaign_id, status, n, stalled, stopped in rows:
        entry = stats[campaign_id]
        entry["total"] += n
        for key in _COUNTS_AS.get(status, ()):
            entry[key] += n
        if status == "cancelled" and stalled:
            # Cancelled behind a failed step: `retry_failed` brings these back, so
            # they are reported as stalled rather than cancelled.
            entry["cancelled"] -= stalled
            entry["stalled"] += stalled
        if status == "cancelled":
            # Steps a stop condition stopped (counted in `cancelled` as well).
            entry["stopped"] += stopped
    # A lead counts as replied in the campaign whose message its reply answers (the
    # latest message sent to it, see messaging.inbound): a lead in two campaigns
    # is credited to one, and a reply to anything else is not a campaign's reply.
    replied = (
        InboundMessage.objects.filter(in_reply_to__campaign_id__in=ids, lead__isnull=False)
        .values_list("in_reply_to__campaign_id")
        .annotate(n=Count("lead_id", distinct=True))
        .order_by()
    )
    for campaign_id, n in replied:
        stats[campaign_id]["replied"] = n
    return {campaign_id: stats[campaign_id] for campaign_id in ids}


def api_tool_list(*, workspace) -> QuerySet[ApiTool]:
    return ApiTool.objects.filter(workspace=workspace).order_by("name")


def lead_timeline(*, campaign: Campaign, lead_id: str) -> list[dict]:
    """A lead's way through the campaign: each step's message in order, with its
    status, when it last moved and why it was not sent (a stop condition, a reply,
    a failure), and the path it took at a branch, with the condition that chose it."""
    steps = {step.position: step for step in campaign.steps.all()}
    entries = []
    for message in Message.objects.filter(campaign_id=campaign.pk, lead_id=lead_id):
        step = steps.get(message.step_index)
        entries.append(
            {
                "order": _order(step, message.step_index or 0),
                "label": _step_label(step, message.step_index or 0),
                "status": message.status,
                "text": message.rendered_body or message.body,
                "channel": message.message_type,
                "at": message.failed_at
                or message.read_at
                or message.delivered_at
                or message.sent_at
                or (message.updated_at if message.status == "cancelled" else None),
                "due": message.scheduled_date if message.status in Message.WAITING else None,
                "reason": message.cancel_reason or message.error_message,
            }
        )
    for decision in BranchDecision.objects.filter(campaign_id=campaign.pk, lead_id=lead_id):
        step = steps.get(decision.step.position) if decision.step_id else None
        position = decision.step.position
        conditions = step.branch_conditions if step else []
        entries.append(
            {
                "order": (position, 0),
                "label": f"Branch at step {position + 1}",
                "status": "branch",
                "text": f"Path {decision.path + 1}",
                "condition": conditions[decision.path] if decision.path < len(conditions) else {},
                "channel": "",
                "at": decision.decided_at,
                "due": None,
                "reason": decision.detail,
            }
        )
    return sorted(entries, key=lambda entry: entry["order"])


def _order(step, position: int) -> tuple[int, int]:
    if step is not None and step.parent_id is not None:
        return (step.parent.position, 1 + position)
    return (position, 0)


def _step_label(step, position: int) -> str:
    if step is not None and step.parent_id is not None:
        return f"Path {step.path + 1}, step {step.index_in_path + 1}"
    return f"Step {position + 1}"


def branch_counts(*, campaign: Campaign) -> list[dict]:
    """Per branch step of the campaign: each path (its condition) with how many
    leads took it, and how many wait at the branch still."""
    counts = {
        (step_id, path): n
        for step_id, path, n in BranchDecision.objects.filter(campaign_id=campaign.pk)
        .values_list("step_id", "path")
        .annotate(n=Count("pk"))
        .order_by()
    }
    found = []
    for step in campaign.steps.all():
        if not step.is_branch:
            continue
        found.append(
            {
                "step": step,
                "waiting": awaiting_branch(campaign).count(),
                "paths": [
                    {
                        "index": j,
                        "condition": condition,
                        "count": counts.get((step.pk, j), 0),
                    }
                    for j, condition in enumerate(step.branch_conditions)
                ],
            }
        )
    return found
