"""Reads for lines, scoped to a workspace."""

from datetime import datetime

from django.db.models import Prefetch, QuerySet

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
