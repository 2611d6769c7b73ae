"""A campaign's dry run for one lead: the whole path it would take, without sending.

The lead is taken as enrolled now. Each step comes due after its wait, as in a
real run (campaigns.sequencing): its stop conditions are judged then, a branch
tries its conditions then ("no reply for" is fast-forwarded to when it can
answer), and the message is rendered as the dispatcher renders it, with the
channel it would go by (iMessage when the lead's address is known to be on
iMessage, the SMS fallback when it is known not to be). The operator can play
replies as the lead: each arrives a minute after the message it follows. The
conditions read the lead's real data (tags, replies, the do-not-contact list) and
call API tools live; nothing is written, nothing is sent, no counter moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from campaigns import pacing
from campaigns.conditions import Context, Outcome, Rule, choose_branch, evaluate
from campaigns.enrollment import dnc_values, stop_reason
from campaigns.models import Campaign, Step
from campaigns.sequencing import REPLIED, STOP_CONDITION
from leads.availability import cache_lookup, lead_addresses
from leads.models import Lead
from messaging import templating
from tuco.errors import NotFound
from tuco.ids import looks_like_id

REPLY_DELAY = timedelta(minutes=1)
# A path never has more steps than this (main steps, one branch, a path).
_MAX_EVENTS = 64


@dataclass(frozen=True)
class PlayedReply:
    """A reply the lead sends after its `after`-th message (1 = the first)."""

    after: int
    text: str


@dataclass
class DryRunStep:
    label: str
    kind: str  # message | branch
    at: datetime
    wait: str
    text: str = ""
    channel: str = ""
    stop_results: list[tuple[Rule, Outcome]] = field(default_factory=list)
    stopped: str = ""
    branch_path: int | None = None
    branch_type: str = ""
    branch_detail: str = ""
    branch_results: list[tuple[Rule, Outcome]] = field(default_factory=list)
    reply: str = ""


@dataclass
class DryRun:
    campaign: Campaign
    lead: Lead
    steps: list[DryRunStep]
    outcome: str  # completed | stopped
    reason: str = ""

    @property
    def messages(self) -> list[DryRunStep]:
        return [step for step in self.steps if step.kind == "message" and not step.stopped]


def dry_run(
    *, workspace, campaign_id: str, lead_id: str, replies: list[PlayedReply] = ()
) -> DryRun:
    """The dry run of the workspace's campaign for its lead (NotFound for either)."""
    from campaigns.selectors import campaign_get

    campaign = campaign_get(workspace=workspace, campaign_id=campaign_id)
    lead = (
        Lead.objects.filter(workspace=workspace, pk=lead_id).first()
        if looks_like_id(lead_id)
        else None
    )
    if lead is None:
        raise NotFound("Lead not found or access denied")
    return campaign_dry_run(campaign=campaign, lead=lead, replies=replies)


def campaign_dry_run(
    *, campaign: Campaign, lead: Lead, replies: list[PlayedReply] = (), now: datetime | None = None
) -> DryRun:
    now = now or timezone.now()
    steps = list(campaign.steps.order_by("position"))
    main = [step for step in steps if step.parent_id is None]
    paths: dict[int, list[Step]] = {}
    for step in steps:
        if step.parent_id is not None:
            paths.setdefault(step.path, []).append(step)
    lines = pacing.usable_lines(campaign)
    line = lines[0] if lines else None
    run = _Run(campaign=campaign, lead=lead, line=line, replies=list(replies), start=now)

    reason = stop_reason(lead, dnc_values(campaign.workspace_id))
    if reason:
        return DryRun(campaign, lead, [], "stopped", reason)
    first = main[0]
    at = now if campaign.send_immediately else now + first.delay_timedelta
    wait = "On enrollment" if campaign.send_immediately else _wait(first)
    run.send(first, at, wait, f"Step {first.position + 1}")
    sequence = main[1:]
    while sequence and not run.stopped and len(run.steps) < _MAX_EVENTS:
        step, sequence = sequence[0], sequence[1:]
        if step.is_branch:
            index = run.branch(step)
            if index is not None:
                sequence = paths.get(index, [])
            continue
        label = (
            f"Path {step.path + 1}, step {step.index_in_path + 1}"
            if step.parent_id is not None
            else f"Step {step.position + 1}"
        )
        start = run.decided_at if step.parent_id is not None and step.index_in_path == 0 else None
        run.step(step, label, start)
    outcome = "stopped" if run.stopped else "completed"
    return DryRun(campaign, lead, run.steps, outcome, run.stopped)


class _Run:
    def __init__(self, *, campaign, lead, line, replies, start):
        self.campaign = campaign
        self.lead = lead
        self.line = line
        self.replies = replies
        self.start = start
        self.steps: list[DryRunStep] = []
        self.played: list[tuple[datetime, str]] = []
        self.sent = 0
        self.last_sent: datetime = start
        self.decided_at: datetime | None = None
        self.stopped = ""
        # API tool answers of this dry run, per step: each tool is asked once a step.
        self.tool_answers: dict[int, dict] = {}

    def context(self, now: datetime, step: Step) -> Context:
        return Context(
            workspace=self.campaign.workspace,
            lead=self.lead,
            now=now,
            campaign_id=self.campaign.pk,
            since=self.start,
            last_sent_at=self.last_sent,
            step=step,
            played_replies=tuple(self.played),
            keep_tool_answers=False,
            _tools=self.tool_answers.setdefault(step.pk, {}),
        )

    def replied(self, by: datetime) -> bool:
        return any(at <= by for at, _ in self.played)

    def send(self, step: Step, at: datetime, wait: str, label: str, **extra) -> DryRunStep:
        entry = DryRunStep(
            label=label,
            kind="message",
            at=at,
            wait=wait,
            text=templating.render(
                step.message, templating.context_for(lead=self.lead, line=self.line)
            ),
            channel=self._channel(step),
            **extra,
        )
        self.steps.append(entry)
        self.sent += 1
        self.last_sent = at
        for reply in self.replies:
            if reply.after == self.sent:
                entry.reply = reply.text
                self.played.append((at + REPLY_DELAY, reply.text))
        return entry

    def step(self, step: Step, label: str, start: datetime | None) -> None:
        at = (start or self.last_sent) + step.delay_timedelta
        if self.campaign.stop_on_reply and self.replied(at):
            self._stop(step, label, at, REPLIED)
            return
        context = self.context(at, step)
        rules = [Rule.from_dict(rule) for rule in step.stop_rules]
        results = [(rule, evaluate(rule, context)) for rule in rules]
        hit = next((outcome for _, outcome in results if outcome.result), None)
        if hit is not None:
            self._stop(step, label, at, f"{STOP_CONDITION}: {hit.detail}", results)
            return
        self.send(step, at, _wait(step), label, stop_results=results)

    def branch(self, step: Step) -> int | None:
        at = self.last_sent + step.delay_timedelta
        label = f"Branch at step {step.position + 1}"
        if self.campaign.stop_on_reply and self.replied(at):
            self._stop(step, label, at, REPLIED)
            return None
        conditions = [Rule.from_dict(rule) for rule in step.branch_conditions]
        wait = _wait(step)
        for _ in range(len(conditions) + 1):
            index, outcome = choose_branch(conditions, self.context(at, step))
            if index is not None or outcome.retry_at is None:
                break
            # "No reply for" cannot answer yet: fast-forward to when it can.
            at = outcome.retry_at
            wait = f"{wait}, then until {at:%b %-d, %H:%M}"
            if self.campaign.stop_on_reply and self.replied(at):
                self._stop(step, label, at, REPLIED)
                return None
        context = self.context(at, step)
        results = [(rule, evaluate(rule, context)) for rule in conditions]
        entry = DryRunStep(label=label, kind="branch", at=at, wait=wait, branch_results=results)
        if index is not None:
            entry.branch_path = index
            entry.branch_type = conditions[index].type
            entry.branch_detail = outcome.detail
        self.steps.append(entry)
        self.decided_at = at
        return index

    def _stop(self, step, label, at, reason, results=()) -> None:
        self.steps.append(
            DryRunStep(
                label=label,
                kind="branch" if step.is_branch else "message",
                at=at,
                wait=_wait(step),
                stop_results=list(results),
                stopped=reason,
            )
        )
        self.stopped = reason

    def _channel(self, step: Step) -> str:
        if step.message_type != "imessage":
            return step.message_type
        known = cache_lookup(
            workspace=self.campaign.workspace,
            addresses=lead_addresses(self.lead),
            now=timezone.now(),
        )
        if any(known.values()):
            return "imessage"
        if known and step.sms_fallback_message:
            return "sms_fallback"
        if known:
            return "imessage_unavailable"
        return "imessage_unchecked"


def _wait(step: Step) -> str:
    if not step.delay:
        return "Right away"
    unit = step.get_delay_unit_display().lower()
    if step.delay == 1:
        unit = unit.rstrip("s")
    return f"{step.delay} {unit} later"
