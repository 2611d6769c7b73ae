"""Reads for lines, scoped to a workspace."""

from datetime import datetime

from django.db.models import Prefetch, QuerySet

from lines import safety
from lines.models import Line, LineUsage
from lines.services import utc_today
from tuco.errors import NotFound
from tuco.ids import looks_like_id


def line_list(*, workspace, now: datetime | None = None) -> QuerySet[Line]:
    """The workspace's lines with today's usage prefetched as `today_usage` (a list)."""
    today = LineUsage.objects.filter(date=utc_today(now))
    return Line.objects.filter(workspace=workspace).prefetch_related(
        Prefetch("usage_days", queryset=today, to_attr="today_usage")
    )


def line_get(*, workspace, line_id, now: datetime | None = None) -> Line:
    """One line of the workspace; a malformed or foreign id is simply not found."""
    if not looks_like_id(line_id):
        raise NotFound("Line not found")
    line = line_list(workspace=workspace, now=now).filter(pk=line_id).first()
    if line is None:
        raise NotFound("Line not found")
    return line


def line_today_usage(line: Line, now: datetime | None = None) -> LineUsage:
    """Today's usage, from the prefetch when there is one."""
    rows = getattr(line, "today_usage", None)
    if rows is None:
        rows = list(LineUsage.objects.filter(line=line, date=utc_today(now)))
    return rows[0] if rows else LineUsage(line=line, date=utc_today(now))


def spam_monitor(*, workspace, now: datetime | None = None) -> list[dict]:
    """Each line's figures for GET /api/lines/spam-monitor (published shape first)."""
    from tuco.api.fields import iso_utc

    lines = list(Line.objects.filter(workspace=workspace).order_by("created_at", "pk"))
    stats = safety.line_stats_many(lines=lines, now=now)
    items = []
    for line in lines:
        figures = stats[line.pk]
        risk = figures.risk
        recommendation = safety.RECOMMENDATIONS[risk]
        if line.safety_action:
            recommendation = f"{recommendation} In force: {line.get_safety_action_display()}."
        items.append(
            {
                "lineId": line.pk,
                "linePhone": line.phone or None,
                "lineType": "phone" if line.phone else ("email" if line.email else line.line_type),
                "totalSentLast24h": figures.sent_24h,
                "failedLast24h": figures.failed_24h,
                "failureRate": figures.failure_rate,
                "consecutiveFailures": figures.consecutive_failures,
                "spamRisk": risk,
                "recommendation": recommendation,
                "deliveredLast24h": figures.delivered_24h,
                "deliveryRate": figures.delivery_rate,
                "repliesLast7d": figures.replies_7d,
                "sentLast7d": figures.sent_7d,
                "replyRate": figures.reply_rate,
                "state": line.health_status,
                "reason": line.health_detail,
                "action": line.safety_action or None,
                "actionReason": line.safety_action_reason or None,
                "actionUntil": iso_utc(line.safety_action_until),
            }
        )
    return items
