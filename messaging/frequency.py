"""The frequency cap: at most N messages per lead per 24 hours and M per 7 days,
across every campaign and one-off send of a workspace.

What counts: every message that went out to the lead (it reached `sending`: sent,
delivered, read, fallback, or still sending), whatever its channel or origin, timed
by when the dispatcher let it go. A message over the cap is never dropped: the
dispatcher holds it (`scheduled`, `scheduledDate` the moment the oldest counted
send ages out of the window, `holdReason` saying why) and looks again then.

One-off API sends count and are held like campaign sends: the published API
accepts them as it always did (201, `pending`) and a held one shows `scheduled`
with the time it will go, as a send rescheduled by a line limit does. Exempt from
holding (still counted): a message to a lead who wrote to us in the last 24 hours,
which answers a conversation rather than reaching out (unibox replies, a CRM's
answer). A message without a lead has nobody to count against.

Two dispatchers cannot both pass the cap for one lead: each locks a gate row per
lead (RecipientGate, address `lead:<id>`, in the same sorted order as the address
gates) before it reads the lead's recent sends, so the second reads after the
first committed its `sending` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from messaging.models import FrequencyCap
from tuco.errors import ValidationFailed

DAY = timedelta(hours=24)
WEEK = timedelta(days=7)
COUNTED = ("sending", "sent", "delivered", "read", "fallback")
# A lead who wrote this recently is in a conversation: answering is not held.
CONVERSATION_WINDOW = DAY
CAP_MAX = 1000


@dataclass(frozen=True)
class Caps:
    per_day: int
    per_week: int

    @property
    def enabled(self) -> bool:
        return bool(self.per_day or self.per_week)


def default_caps() -> Caps:
    return Caps(
        per_day=max(0, settings.FREQUENCY_CAP_PER_DAY),
        per_week=max(0, settings.FREQUENCY_CAP_PER_WEEK),
    )


def caps_for(workspace_id: str) -> Caps:
    return caps_for_many([workspace_id])[workspace_id]


def caps_for_many(workspace_ids) -> dict[str, Caps]:
    """The caps of each of these workspaces, read together."""
    ids = list(workspace_ids)
    if not ids:
        return {}
    rows = FrequencyCap.objects.filter(workspace_id__in=ids).values_list(
        "workspace_id", "per_day", "per_week"
    )
    found = {workspace_id: Caps(per_day, per_week) for workspace_id, per_day, per_week in rows}
    default = default_caps()
    return {workspace_id: found.get(workspace_id, default) for workspace_id in ids}


@transaction.atomic
def frequency_cap_update(*, workspace, per_day: int, per_week: int) -> Caps:
    """Set the workspace's caps (0: no cap of that kind)."""
    for value, field in ((per_day, "perDay"), (per_week, "perWeek")):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= CAP_MAX:
            raise ValidationFailed(f"Must be a whole number from 0 to {CAP_MAX}", field=field)
    FrequencyCap.objects.update_or_create(
        workspace=workspace, defaults={"per_day": per_day, "per_week": per_week}
    )
    return Caps(per_day, per_week)


def lead_gate_key(lead_id: str) -> str:
    """The RecipientGate address that serializes the cap of one lead."""
    return f"lead:{lead_id}"


def held_until(sent: list[datetime], caps: Caps, now: datetime) -> tuple[datetime, str] | None:
    """When one more message to a lead who was sent messages at `sent` fits the caps,
    and why it waits; None when it fits now. A send exactly 24 h (7 days) ago no
    longer counts."""
    waits = []
    for cap, window, words in (
        (caps.per_day, DAY, "24 hours"),
        (caps.per_week, WEEK, "7 days"),
    ):
        if not cap:
            continue
        recent = sorted(t for t in sent if t > now - window)
        if len(recent) >= cap:
            # Once the oldest of the last `cap` sends ages out, one more fits.
            waits.append((recent[len(recent) - cap] + window, cap, words))
    if not waits:
        return None
    until, cap, words = max(waits)
    plural = "message" if cap == 1 else "messages"
    reason = f"Frequency cap: this lead already got {cap} {plural} in {words}"
    return until, reason
