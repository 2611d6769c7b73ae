"""Messaging's side of line safety: iMessages that never got a receipt, and the alerts
a line's change of state sends (webhook events, email to owners and admins)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from lines import safety as line_safety
from lines.models import Line
from messaging.models import Message
from messaging.webhooks import event_emit
from tuco.api.fields import iso_utc
from tuco.models import Membership, Workspace

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500
EMAILED_EVENTS = ("line.down", "line.quarantined")


def undelivered_after() -> timedelta:
    return timedelta(minutes=getattr(settings, "UNDELIVERED_AFTER_MINUTES", 30))


def messages_mark_undelivered(*, now: datetime | None = None) -> int:
    """Flag the iMessages sent more than UNDELIVERED_AFTER_MINUTES ago that have no
    delivery receipt; each counts against its line once and emits
    `message.undelivered`. Nothing is resent: the relay accepted the message, and a
    duplicate text is worse than a missing one (a send error the relay reports later
    still fails it, with its fallback SMS)."""
    now = now or timezone.now()
    threshold = now - undelivered_after()
    marked = 0
    while True:
        with transaction.atomic():
            rows = list(
                Message.objects.select_for_update(no_key=True, skip_locked=True, of=("self",))
                .filter(
                    status=Message.Status.SENT,
                    message_type=Message.Type.IMESSAGE,
                    sent_at__lte=threshold,
                    delivered_at__isnull=True,
                    undelivered_at__isnull=True,
                )
                .select_related("workspace", "lead")
                .order_by("sent_at")[:SWEEP_BATCH]
            )
            if not rows:
                return marked
            Message.objects.filter(pk__in=[m.pk for m in rows]).update(undelivered_at=now)
            for message in rows:
                message.undelivered_at = now
                _emit_undelivered(message, now)
            # Oldest first, so a line's run of consecutive failures follows send order.
            for message in rows:
                if message.line_id:
                    line_safety.line_evidence_record(
                        line_id=message.line_id, kind="undelivered", at=now
                    )
            marked += len(rows)
        if len(rows) < SWEEP_BATCH:
            return marked


# A line's receipt latency is learned from its receipts of the last day, at most this
# many of the latest.
LATENCY_SAMPLE = 50


def lines_hold_unconfirmed(*, now: datetime | None = None) -> list[str]:
    """Hold the lines whose latest LINE_UNCONFIRMED_SENDS_LIMIT iMessages in a row
    have had no delivery receipt for longer than the line's receipts normally take
    (lines.safety.receipt_wait, learned from its own recent receipts). Evidence of a
    line that silently stopped delivering, long before each send times out as
    undelivered. A held line with no send left awaiting a receipt (each was flagged
    undelivered, and their run did not quarantine it) is released. Returns the ids
    of the lines held."""
    now = now or timezone.now()
    limit = line_safety.unconfirmed_limit()
    if limit <= 0 or not line_safety.safety_enabled():
        return []
    earliest = now - line_safety.receipt_wait([])  # the floor: no wait is shorter
    waiting: dict[str, list[datetime]] = {}
    for line_id, sent_at in Message.objects.filter(
        status=Message.Status.SENT,
        message_type=Message.Type.IMESSAGE,
        sent_at__lte=earliest,
        delivered_at__isnull=True,
        undelivered_at__isnull=True,
        line__isnull=False,
    ).values_list("line_id", "sent_at"):
        waiting.setdefault(line_id, []).append(sent_at)
    held = []
    candidates = [line_id for line_id, sends in waiting.items() if len(sends) >= limit]
    lines = Line.objects.filter(
        Q(
            pk__in=candidates,
            is_active=True,
            health_status__in=[Line.Health.HEALTHY, Line.Health.DEGRADED, Line.Health.UNKNOWN],
        )
        | Q(safety_action=Line.SafetyAction.HELD)
    )
    for line in lines:
        if line.safety_action == Line.SafetyAction.HELD:
            # Released by a receipt (lines.safety) or, with every send it waited on
            # flagged undelivered and the line still not quarantined, here.
            if not waiting.get(line.pk):
                with transaction.atomic():
                    line_safety.line_release(
                        line=line, reason="No more sends awaiting delivery receipts", now=now
                    )
            continue
        overdue, wait = _overdue_in_a_row(line, waiting.get(line.pk, []), now)
        if overdue < limit:
            continue
        minutes = max(1, round(wait.total_seconds() / 60))
        reason = (
            f"Awaiting delivery receipts: the last {overdue} iMessages got none within "
            f"{minutes} min"
        )
        if line_safety.line_hold(line=line, reason=reason, now=now):
            held.append(line.pk)
    return held


def _overdue_in_a_row(line: Line, sent_at: list[datetime], now: datetime) -> tuple[int, timedelta]:
    """How many of the line's sends awaiting a receipt (`sent_at`) are overdue and came
    after its latest send that got one, and the wait the line's receipts call for."""
    if not sent_at:
        return 0, line_safety.receipt_wait([])
    confirmed = list(
        Message.objects.filter(
            line_id=line.pk,
            message_type=Message.Type.IMESSAGE,
            delivered_at__isnull=False,
            sent_at__gte=now - timedelta(days=1),
        )
        .order_by("-sent_at")
        .values_list("sent_at", "delivered_at")[:LATENCY_SAMPLE]
    )
    wait = line_safety.receipt_wait(
        [(delivered - sent).total_seconds() for sent, delivered in confirmed]
    )
    overdue = line_safety.overdue_in_a_row(
        sent_at=sent_at,
        last_confirmed=confirmed[0][0] if confirmed else None,
        wait=wait,
        now=now,
    )
    return overdue, wait


def _emit_undelivered(message: Message, now: datetime) -> None:
    event_emit(
        workspace=message.workspace,
        event="message.undelivered",
        message=message,
        lead=message.lead,
        data={
            "status": message.status,
            "lineId": message.line_id,
            "sentAt": iso_utc(message.sent_at),
            "undeliveredAt": iso_utc(now),
        },
    )


# Alerts


def line_event_payload(line: Line, event: str, reason: str, data: dict) -> dict:
    stats = line_safety.line_stats(line=line)
    return {
        "lineId": line.pk,
        "linePhone": line.phone or None,
        "lineEmail": line.email or None,
        "lineName": line.display_name,
        "status": line.health_status,
        "reason": reason,
        "action": line.safety_action or None,
        "actionUntil": iso_utc(line.safety_action_until),
        "spamRisk": stats.risk,
        "failureRate": stats.failure_rate,
        **{
            key: iso_utc(value) if isinstance(value, datetime) else value
            for key, value in data.items()
        },
    }


def on_line_safety_changed(sender, line_id, workspace_id, event, reason, data=None, **kwargs):
    """Receiver of lines.signals.line_safety_changed (connected in
    MessagingConfig.ready()), inside the transaction that changed the line: the
    webhook outbox rows commit with it; the email goes after the commit."""
    line = Line.objects.filter(pk=line_id).first()
    workspace = Workspace.objects.filter(pk=workspace_id).first()
    if line is None or workspace is None:
        return
    payload = line_event_payload(line, event, reason, data or {})
    event_emit(workspace=workspace, event=event, data=payload)
    if event in EMAILED_EVENTS:
        transaction.on_commit(lambda: _email_owners(workspace, line, event, reason), robust=True)


def _email_owners(workspace: Workspace, line: Line, event: str, reason: str) -> None:
    User = get_user_model()  # noqa: N806
    recipients = sorted(
        email
        for email in User.objects.filter(
            memberships__workspace=workspace,
            memberships__role__in=[Membership.Role.OWNER, Membership.Role.ADMIN],
            is_active=True,
        ).values_list("email", flat=True)
        if email
    )
    if not recipients:
        return
    what = "is down" if event == "line.down" else "was quarantined"
    subject = f"[Tuco] Line {line.display_name} {what}"
    body = (
        f"The line {line.display_name} in {workspace.name} {what}.\n\n"
        f"Reason: {reason}\n"
        "New sends avoid it; campaign leads it has not contacted yet move to healthy lines.\n"
    )
    if line.safety_action_until and event == "line.quarantined":
        body += f"It is checked again for release after {iso_utc(line.safety_action_until)}.\n"
    send_mail(subject, body, None, recipients)
