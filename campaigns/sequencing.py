"""How a campaign's messages move from "written" to "due", one step after the other.

Every enrollment writes one message per step up front (messageCount = steps), all
`scheduled` and `held` (Message.held), which the dispatcher never claims. A held
message is invisible to the send pipeline; campaigns alone releases it, with a
conditional UPDATE whose WHERE clause still requires it scheduled and held:

* step 0 is released by the pacing gate (campaigns.pacing) when the campaign is
  active, its first send time (`scheduled_date`) has come and its line has room;
* step k > 0 is released when step k-1 reached sent / delivered / read /
  fallback: due at that send time plus step k's delay;
* step k > 0 with stop conditions (campaigns.conditions) stays held until it is
  due; then a true condition cancels it with `STOP_CONDITION` and what was found,
  and none releases it;
* step k > 0 is cancelled when step k-1 was cancelled (reply, opt-out,
  do-not-contact, cancel-for-lead), or when the lead replied (replyBehavior
  "stop"), opted out or went on the do-not-contact list meanwhile; the pacing
  gate applies the same stop rules to step 0 before it releases it;
* step k > 0 is cancelled with `AFTER_FAILURE` when step k-1 failed: the
  lead's sequence stops there, so a campaign never waits on a stall and
  completes once none of its messages is pending, scheduled or sending.
  `retry_failed` holds the failed message again and brings back the steps
  cancelled behind it, and the same rules release them in order.

Why this gives "no duplicate, no skipped message":
* each step is exactly one row, created once (the enrollment is unique per
  campaign and lead, and its messages are inserted in the same transaction);
* the only ways out of held are the guarded updates above, so a release that
  runs twice (the `message_status_changed` signal and the periodic sweep, or
  two workers) changes the row once; the dispatcher then owns the row and its
  own conditional claim sends it at most once;
* step k is released only after step k-1 has an outcome, so the order holds,
  and every outcome of step k-1 leads to exactly one of release or cancel
  (with its reason), so nothing is left behind silently;
* pause holds every waiting row of the campaign again under the campaign
  row lock, which the release paths also take, so nothing is released while
  paused; resume re-runs the rules, which recompute the same due times from
  the predecessors' send times (steps already sent are never touched).

The signal (`messaging.signals.message_status_changed`) is the fast path; the
periodic sweep (`campaign_sweep`) is the guarantee when a signal was missed.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from django.db import transaction
from django.db.models import Case, DateTimeField, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone

from campaigns.conditions import (
    Context,
    Rule,
    ToolAnswers,
    gather_tool_answers,
    page_tags,
    stop_verdict,
)
from campaigns.models import BranchDecision, Campaign, Enrollment, Step
from leads.models import Lead, LeadIdentifier
from messaging.models import DoNotContact, Message

WAITING = ("pending", "scheduled")
OPEN = ("pending", "scheduled", "sending")
# A step with one of these outcomes was delivered to the lead one way or another.
DONE = ("sent", "delivered", "read", "fallback")

# Cancel reasons (Message.cancel_reason) for a lead's steps that will not go out.
OPTED_OUT = "Lead opted out"
DO_NOT_CONTACT = "Recipient is on the do-not-contact list"
REPLIED = "The lead replied"
SEQUENCE_STOPPED = "Sequence stopped"
# A step's stop condition was true when it came due ("<this>: <what was found>").
STOP_CONDITION = "Stop condition met"
# Leads judged per step and round (campaigns_tick every few seconds).
CONDITION_BATCH = 1000
# The only cancel that `retry_failed` undoes.
AFTER_FAILURE = "Not sent: an earlier step failed"


def _held(campaign_id: str, lead_ids=None):
    rows = Message.objects.filter(campaign_id=campaign_id, status="scheduled", held=True)
    if lead_ids is not None:
        rows = rows.filter(lead_id__in=lead_ids)
    return rows


def stop_reasons(campaign: Campaign, lead_ids=None) -> dict[str, str]:
    """{lead id: why} for the campaign's leads that must hear nothing more from it:
    opted out, on the do-not-contact list, or (replyBehavior "stop") replied after
    enrolling. `lead_ids` limits the answer to these leads."""
    enrollments = Enrollment.objects.filter(campaign_id=campaign.pk)
    if lead_ids is not None:
        enrollments = enrollments.filter(lead_id__in=list(lead_ids))
    reasons: dict[str, str] = {}
    # From the do-not-contact side: that list is short, the campaign may be huge.
    listed = LeadIdentifier.objects.filter(
        workspace_id=campaign.workspace_id,
        value__in=DoNotContact.objects.filter(workspace_id=campaign.workspace_id).values("value"),
    ).values("lead_id")
    for lead_id in enrollments.filter(lead_id__in=listed).values_list("lead_id", flat=True):
        reasons[lead_id] = DO_NOT_CONTACT
    stop = Q(lead__opted_out=True)
    if campaign.stop_on_reply:
        stop |= Q(lead__replied_at__gte=F("enrolled_at"))
    for lead_id, opted_out in enrollments.filter(stop).values_list("lead_id", "lead__opted_out"):
        reasons[lead_id] = OPTED_OUT if opted_out else REPLIED
    return reasons


def stop_leads(*, campaign: Campaign, reasons: dict[str, str], now: datetime) -> int:
    """Cancel every waiting message of these leads in the campaign (with the lead's
    reason) and mark their enrollments stopped; returns the messages cancelled.

    The WHERE clause keeps to waiting rows, so a row the dispatcher already claimed
    is left to finish (the send pipeline re-checks opt-out and do-not-contact).
    """
    by_reason: dict[str, list[str]] = {}
    for lead_id, reason in reasons.items():
        by_reason.setdefault(reason, []).append(lead_id)
    cancelled = 0
    for reason, lead_ids in by_reason.items():
        for chunk in _chunks(sorted(lead_ids), 1000):
            mine = Message.objects.filter(campaign_id=campaign.pk, lead_id__in=chunk)
            cancelled += mine.filter(status__in=WAITING).update(
                status="cancelled", cancel_reason=reason, updated_at=now
            )
            # Steps cancelled behind a failure are no longer for `retry_failed` either.
            mine.filter(status="cancelled", cancel_reason=AFTER_FAILURE).update(
                cancel_reason=reason, updated_at=now
            )
            Enrollment.objects.filter(
                campaign_id=campaign.pk, lead_id__in=chunk, state__in=("active", "failed")
            ).update(state="stopped", finished_at=now)
    return cancelled


def advance_sequences(
    *,
    campaign: Campaign,
    lead_ids=None,
    now: datetime | None = None,
    tool_answers: ToolAnswers | None = None,
) -> int:
    """Release or cancel the held follow-up steps whose predecessor has an outcome.

    Call with the campaign row locked (select_for_update) and the campaign
    active. `lead_ids` limits the work to these leads (the signal path). Returns
    the number of messages released. API tools are not called here (the row
    locks are held): their answers come from `tool_answers` (fetched before the
    locks by `fetch_tool_answers`) or from the runs kept for the lead and step;
    a step whose tool has no answer yet stays held until a later round.

    Each step is two index scans on (campaign_id, status) joined here, then
    updates by primary key: the cost stays linear in the campaign's size
    whatever the planner's statistics say about freshly bulk-inserted rows.
    """
    now = now or timezone.now()
    released = 0
    stopped = None
    for step in _follow_up_steps(campaign):
        held = _held_at(campaign, step, lead_ids)
        if not held:
            continue
        if stopped is None:
            stopped = stop_reasons(campaign, lead_ids)
        release, sent_at_by_lead, cancel = _step_outcomes(campaign, step, lead_ids, held, stopped)
        if step.stop_rules:
            release = _judge_stop_rules(
                campaign, step, release, held, sent_at_by_lead, cancel, now, tool_answers
            )
        for reason, ids in cancel.items():
            for chunk in _chunks(sorted(ids), 1000):
                _held(campaign.pk).filter(pk__in=chunk).update(
                    status="cancelled", cancel_reason=reason, updated_at=now
                )
        released += _release(release, now=now)
    return released


def fetch_tool_answers(*, campaign: Campaign, now: datetime, lead_ids=None) -> ToolAnswers:
    """Call the API tools that the stop rules of the campaign's follow-up steps
    need for the leads those steps judge next (the same batch `advance_sequences`
    takes), before any row lock is taken: outside a transaction. Nothing is
    released or cancelled here; the answers are kept per lead and step (ApiToolRun)
    and returned for the locked round. See campaigns.branching for branch steps."""
    answers = ToolAnswers()
    stopped = None
    for step in _follow_up_steps(campaign):
        if not any(rule.get("type") == "api_tool" for rule in step.stop_rules or []):
            continue
        held = _held_at(campaign, step, lead_ids)
        if not held:
            continue
        if stopped is None:
            stopped = stop_reasons(campaign, lead_ids)
        release, sent_at_by_lead, cancel = _step_outcomes(campaign, step, lead_ids, held, stopped)
        judge = partial(
            _judge_stop_rules, campaign, step, release, held, sent_at_by_lead, {}, now, answers
        )
        gather_tool_answers(judge, answers, campaign.workspace)
    return answers


def _follow_up_steps(campaign: Campaign) -> list[Step]:
    return [
        step
        for step in campaign.steps.order_by("position")
        if not step.is_branch and step.position != 0
    ]


def _held_at(campaign: Campaign, step: Step, lead_ids) -> dict[str, str]:
    """{lead id: message id} of the step's held messages."""
    return dict(
        _held(campaign.pk, lead_ids).filter(step_index=step.position).values_list("lead_id", "pk")
    )


def _step_outcomes(campaign: Campaign, step: Step, lead_ids, held: dict, stopped: dict):
    """(release, sent at by lead, cancel) for a step's held messages: the rows whose
    predecessor reached the lead, with their due times; when the predecessor did;
    and {reason: message ids} of the rows to cancel."""
    previous = _previous(campaign, step, lead_ids)
    cancel: dict[str, list[str]] = {}
    release = []
    sent_at_by_lead: dict[str, datetime] = {}
    for lead_id, status, reason, sent_at, updated_at in previous:
        message_id = held.get(lead_id)
        if message_id is None or lead_id in stopped:
            continue
        if status == "failed" or (status == "cancelled" and reason == AFTER_FAILURE):
            cancel.setdefault(AFTER_FAILURE, []).append(message_id)
        elif status == "cancelled":
            cancel.setdefault(SEQUENCE_STOPPED, []).append(message_id)
        else:
            release.append((message_id, (sent_at or updated_at) + step.delay_timedelta))
            sent_at_by_lead[lead_id] = sent_at or updated_at
    for lead_id, reason in stopped.items():
        if lead_id in held:
            cancel.setdefault(reason, []).append(held[lead_id])
    return release, sent_at_by_lead, cancel


def _previous(campaign: Campaign, step: Step, lead_ids):
    """(lead id, status, cancel reason, sent at, updated at) of what comes before
    `step` for each lead that has an outcome there: the message of the step before
    it, or for the first step of a branch path, the lead's decision for that path
    (as if sent when it was taken)."""
    if step.parent_id is not None and step.index_in_path == 0:
        decisions = BranchDecision.objects.filter(step_id=step.parent_id, path=step.path)
        if lead_ids is not None:
            decisions = decisions.filter(lead_id__in=lead_ids)
        return (
            (lead_id, "sent", "", at, at)
            for lead_id, at in decisions.values_list("lead_id", "decided_at").iterator(
                chunk_size=5000
            )
        )
    previous = Message.objects.filter(
        campaign_id=campaign.pk,
        step_index=step.position - 1,
        status__in=(*DONE, "cancelled", "failed"),
    )
    if lead_ids is not None:
        previous = previous.filter(lead_id__in=lead_ids)
    return previous.values_list(
        "lead_id", "status", "cancel_reason", "sent_at", "updated_at"
    ).iterator(chunk_size=5000)


def awaiting_branch(campaign: Campaign, enrollments=None):
    """The campaign's active enrollments that reached its branch step and have no
    path yet (a sequence that is not over, though nothing of it is waiting)."""
    enrollments = (
        enrollments
        if enrollments is not None
        else Enrollment.objects.filter(campaign_id=campaign.pk)
    )
    branch = campaign.steps.filter(kind=Step.Kind.BRANCH, parent__isnull=True).first()
    if branch is None:
        return enrollments.none()
    reached = Message.objects.filter(
        campaign_id=campaign.pk,
        lead_id=OuterRef("lead_id"),
        step_index=branch.position - 1,
        status__in=DONE,
    )
    decided = BranchDecision.objects.filter(enrollment_id=OuterRef("pk"), step=branch)
    return enrollments.filter(state=Enrollment.State.ACTIVE).filter(
        Exists(reached), ~Exists(decided)
    )


def _judge_stop_rules(
    campaign: Campaign,
    step: Step,
    release: list[tuple[str, datetime]],
    held: dict[str, str],
    sent_at: dict[str, datetime],
    cancel: dict[str, list[str]],
    now: datetime,
    tool_answers: ToolAnswers | None = None,
) -> list[tuple[str, datetime]]:
    """Of a step's messages ready for release, those whose due time has come, once
    none of its stop rules is true for their lead; a true rule cancels the message
    with the rule's finding (the steps behind it follow as SEQUENCE_STOPPED). Rows
    not due yet stay held: the rules are judged when the step comes due, not
    before, and so do rows whose rules cannot answer yet (an API tool without
    an answer, or rate limited). At most CONDITION_BATCH leads per step and
    round, the same ones for the same rows (by message id); the rest wait for
    the next round. API tools are never called here: their answers are in
    `tool_answers` (see `fetch_tool_answers`) or kept for the lead and step."""
    lead_of = {message_id: lead_id for lead_id, message_id in held.items()}
    due = sorted((message_id, at) for message_id, at in release if at <= now)[:CONDITION_BATCH]
    if not due:
        return []
    lead_ids = [lead_of[message_id] for message_id, _ in due]
    leads = Lead.objects.in_bulk(lead_ids)
    enrolled = dict(
        Enrollment.objects.filter(campaign_id=campaign.pk, lead_id__in=lead_ids).values_list(
            "lead_id", "enrolled_at"
        )
    )
    rules = [Rule.from_dict(rule) for rule in step.stop_rules]
    tags = page_tags(rules, lead_ids)
    judged = []
    for message_id, at in due:
        lead_id = lead_of[message_id]
        context = Context(
            workspace=campaign.workspace,
            lead=leads[lead_id],
            now=now,
            campaign_id=campaign.pk,
            since=enrolled.get(lead_id),
            last_sent_at=sent_at.get(lead_id),
            step=step,
            call_tools=False,
            tool_answers=tool_answers,
            tags=tags[lead_id] if tags is not None else None,
        )
        verdict, rule, outcome = stop_verdict(rules, context)
        if verdict is None:
            continue
        if not verdict:
            judged.append((message_id, at))
        else:
            reason = f"{STOP_CONDITION}: {outcome.detail}"[:200]
            cancel.setdefault(reason, []).append(message_id)
    return judged


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


# Rows per release statement: five parameters each (the id in the WHERE clause, the
# id and due time in each of the two CASE expressions), under SQLite's 999.
RELEASE_CHUNK = 150


def _release(rows: list[tuple[str, datetime]], *, now: datetime) -> int:
    """Give held messages their due times and let them go (only rows still held
    change): one conditional UPDATE per chunk, each row's due time picked by id."""
    done = 0
    for chunk in _chunks(rows, RELEASE_CHUNK):
        done += Message.objects.filter(
            pk__in=[pk for pk, _ in chunk], status="scheduled", held=True
        ).update(held=False, due_at=_by_id(chunk), scheduled_date=_by_id(chunk), updated_at=now)
    return done


def _by_id(rows: list[tuple[str, datetime]]) -> Case:
    return Case(*(When(pk=pk, then=Value(at)) for pk, at in rows), output_field=DateTimeField())


def finish_enrollments(*, campaign: Campaign, lead_ids=None, now: datetime | None = None) -> None:
    """Record the state of enrollments whose sequence has no open message left."""
    now = now or timezone.now()
    enrollments = Enrollment.objects.filter(campaign_id=campaign.pk, state="active")
    if lead_ids is not None:
        enrollments = enrollments.filter(lead_id__in=lead_ids)
    messages = Message.objects.filter(campaign_id=campaign.pk, lead_id=OuterRef("lead_id"))
    open_rows = messages.filter(status__in=OPEN)
    # A held step behind a failed one is a stall, not work in progress.
    stalled = messages.filter(status="failed")
    enrollments.filter(Exists(stalled)).exclude(
        Exists(open_rows.filter(Q(held=False) | Q(step_index=0)))
    ).update(state="failed")
    enrollments = (
        enrollments.exclude(Exists(open_rows))
        .exclude(state="failed")
        .exclude(pk__in=awaiting_branch(campaign, enrollments).values("pk"))
    )
    enrollments.filter(Exists(messages.filter(status="cancelled"))).update(
        state="stopped", finished_at=now
    )
    enrollments.filter(state="active").update(state="completed", finished_at=now)


def on_message_status_changed(sender=None, *, message_id=None, campaign_id="", **kwargs):
    """Signal receiver: move that lead's sequence on right away (idempotent)."""
    if not campaign_id or not message_id:
        return
    lead_id = (
        Message.objects.filter(pk=message_id, campaign_id=campaign_id)
        .values_list("lead_id", flat=True)
        .first()
    )
    if lead_id is None:
        return
    now = timezone.now()
    with transaction.atomic():
        # A campaign locked by the periodic sweep (or a pause) is left to the sweep:
        # a send worker never queues behind it.
        campaign = (
            Campaign.objects.select_for_update(no_key=True, skip_locked=True)
            .filter(pk=campaign_id)
            .first()
        )
        if campaign is None:
            return
        if campaign.status == Campaign.Status.ACTIVE:
            advance_sequences(campaign=campaign, lead_ids=[lead_id], now=now)
        finish_enrollments(campaign=campaign, lead_ids=[lead_id], now=now)
