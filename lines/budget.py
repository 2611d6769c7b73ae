"""The send capacity of lines for one dispatch batch.

A dispatch batch decides up to a hundred messages at once. Taking each line's
caps with its own conditional UPDATE would hold row locks taken in whatever
order the round robin visits the lines, for the whole batch: two batches then
wait on each other or deadlock. A SendBudget instead locks, up front, the rows
of every line the batch may use, in line id order, reads their counters for
today, limits and device gaps, takes from them in memory and writes the totals
back (a relative UPDATE per line used) before the caller commits.

The line row is the lock: only a holder of it raises a line's send counters
(`total_messages`, `new_conversations`) or moves its `last_sent_at`, and it
reads them after the previous holder committed, so a cap holds exactly. A failed
send gives its share back with a relative UPDATE, which can only lower what a
holder read (never past the cap). Line rows are taken with SKIP LOCKED, as the
availability engine takes them: a line held by another batch or by an
availability check at that moment is busy for this batch (its messages try
another line or come back a second later), so no one waits for a line row while
holding another lock. Call inside a transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F

from lines import warmup
from lines.jitter import gap_end
from lines.models import Line, LineUsage
from lines.services import utc_today

# A line another batch or check holds right now is looked at again this much later.
BUSY_RETRY = timedelta(seconds=1)


@dataclass
class _Account:
    total: int
    new: int
    total_limit: int
    new_limit: int
    device_gap: int
    jitter_percent: int
    last_sent_at: datetime | None
    taken_total: int = 0
    taken_new: int = 0


def halve(limit: int, halved: bool) -> int:
    """A daily cap as line safety lets it be used today (lines.safety: medium risk)."""
    return limit // 2 if halved else limit


class SendBudget:
    def __init__(self, line_ids, now: datetime):
        assert transaction.get_connection().in_atomic_block, "a SendBudget needs a transaction"
        self.now = now
        self.day = utc_today(now)
        self._busy: set[str] = set()
        self._accounts: dict[str, _Account] = {}
        self._policies: dict[str, warmup.Policy] = {}
        wanted = sorted(set(line_ids))
        if not wanted:
            return
        ids = list(
            Line.objects.select_for_update(no_key=True, skip_locked=True)
            .filter(pk__in=wanted)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        self._busy = set(wanted) - set(ids)
        if not ids:
            return
        counters = self._counters(ids)
        missing = [i for i in ids if i not in counters]
        if missing:  # the first send of the day on these lines
            LineUsage.objects.bulk_create(
                [LineUsage(line_id=i, date=self.day) for i in missing], ignore_conflicts=True
            )
            counters.update(self._counters(missing))
        lines = list(
            Line.objects.filter(pk__in=ids).values(
                "pk",
                "workspace_id",
                "daily_total_messages_limit",
                "daily_new_conversations_limit",
                "device_gap_seconds",
                "last_sent_at",
                "warmup_started_at",
                "safety_action",
                "safety_action_until",
            )
        )
        self._policies = warmup.policies_for(line["workspace_id"] for line in lines)
        for line in lines:
            row = counters.get(line["pk"])
            if row is None:  # the line was deleted meanwhile
                continue
            new_limit = line["daily_new_conversations_limit"]
            if line["warmup_started_at"] is not None:
                state = warmup.warmup_state(
                    started_at=line["warmup_started_at"],
                    line_cap=new_limit,
                    policy=self._policies[line["workspace_id"]],
                    now=now,
                )
                new_limit = new_limit if state is None else state.cap_today
            halved = Line(
                safety_action=line["safety_action"],
                safety_action_until=line["safety_action_until"],
            ).caps_halved(now)
            self._accounts[line["pk"]] = _Account(
                total=row["total_messages_count"],
                new=row["new_conversations_count"],
                total_limit=halve(line["daily_total_messages_limit"], halved),
                new_limit=halve(new_limit, halved),
                device_gap=line["device_gap_seconds"],
                jitter_percent=self._policies[line["workspace_id"]].gap_jitter_percent,
                last_sent_at=line["last_sent_at"],
            )

    def jitter_percent(self, workspace_id: str) -> int:
        """The workspace's gap jitter (for the contact gap), as this budget read it."""
        policy = self._policies.get(workspace_id) or warmup.policy_for(workspace_id)
        self._policies[workspace_id] = policy
        return policy.gap_jitter_percent

    def _counters(self, ids: list[str]) -> dict[str, dict]:
        return {
            row["line_id"]: row
            for row in LineUsage.objects.filter(line_id__in=ids, date=self.day).values(
                "line_id", "total_messages_count", "new_conversations_count"
            )
        }

    def take(self, line: Line, *, new_conversation: bool) -> bool | datetime:
        """Take one message (and one new conversation) from the line's caps and
        restart its device gap: True. The moment the gap ends when it has not
        (nothing taken), or False when a cap is spent (or the line is unknown).
        A line that was busy when the budget was made: a second from now."""
        account = self._accounts.get(line.pk)
        if account is None:
            return self.now + BUSY_RETRY if line.pk in self._busy else False
        if account.total + account.taken_total + 1 > account.total_limit:
            return False
        if new_conversation and account.new + account.taken_new + 1 > account.new_limit:
            return False
        if account.device_gap and account.last_sent_at is not None:
            gap_ends = gap_end(
                account.last_sent_at, account.device_gap, account.jitter_percent, "line", line.pk
            )
            if gap_ends > self.now:
                return gap_ends
        account.taken_total += 1
        account.taken_new += int(new_conversation)
        account.last_sent_at = self.now
        line.last_sent_at = self.now
        return True

    def save(self) -> None:
        """Write what was taken: the counters and the lines' last send time."""
        used = {pk: a for pk, a in self._accounts.items() if a.taken_total}
        if not used:
            return
        ids = sorted(used)
        Line.objects.filter(pk__in=ids).update(last_sent_at=self.now)
        for pk in ids:
            account = used[pk]
            LineUsage.objects.filter(line_id=pk, date=self.day).update(
                total_messages_count=F("total_messages_count") + account.taken_total,
                new_conversations_count=F("new_conversations_count") + account.taken_new,
            )
