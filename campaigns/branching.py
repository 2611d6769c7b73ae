"""Branch steps at run time: which path each lead takes, decided once.

A lead reaches a branch step when the step before it reached the lead (sent,
delivered, read or fallback) and the branch step's own delay has passed. Its
conditions are tried in order (campaigns.conditions.choose_branch); a "no reply
for" that cannot answer yet keeps the lead waiting there until it can. The
decision is a BranchDecision row, unique per enrollment and step: a second
decision for the same lead (the tick run twice, two workers, a retry) fails on
that constraint and writes nothing, so a lead is never on two paths. With the
decision, in the same transaction, the path's messages are written held; the
sequence rules (campaigns.sequencing) release the first one at the decision time
plus its delay, and the rest one after the other.

API tools are called before the tick takes its locks (`fetch_branch_tool_answers`),
never while it holds them; a lead whose tool was rate limited waits at the
branch and is decided on a later round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef

from campaigns.conditions import (
    Context,
    Rule,
    ToolAnswers,
    choose_branch,
    gather_tool_answers,
    page_tags,
)
from campaigns.enrollment import MessageRows, insert_messages
from campaigns.models import BranchDecision, Campaign, Enrollment, Step
from campaigns.sequencing import CONDITION_BATCH, DONE, stop_leads, stop_reasons
from leads.models import Lead
from messaging.models import Message


def branch_step(campaign: Campaign) -> Step | None:
    return campaign.steps.filter(kind=Step.Kind.BRANCH, parent__isnull=True).first()


def decide_branches(
    *, campaign: Campaign, now: datetime, lead_ids=None, tool_answers: ToolAnswers | None = None
) -> int:
    """Send the leads that reached the campaign's branch step down their paths;
    returns how many were decided. Call with the campaign active (and its row
    locked, as the tick does: the unique decision guards even without it). API
    tools are not called here: their answers come from `tool_answers` (see
    `fetch_branch_tool_answers`) or the runs kept for the lead and step, and a
    lead whose tool has no answer yet (or was rate limited) waits at the branch."""
    branch = branch_step(campaign)
    if branch is None:
        return 0
    due = _due(campaign, branch, now, lead_ids)
    if not due:
        return 0
    stopped = stop_reasons(campaign, [lead_id for lead_id, _ in due])
    if stopped:
        # Nothing of theirs is waiting: this marks their enrollments stopped.
        stop_leads(campaign=campaign, reasons=stopped, now=now)
    conditions = [Rule.from_dict(rule) for rule in branch.branch_conditions]
    chosen = [
        Choice(enrollment, lead, index, conditions[index].type, outcome.detail)
        for enrollment, lead, index, outcome in _choose(
            campaign, branch, conditions, due, stopped, now, tool_answers
        )
        if index is not None
    ]
    return branch_record_all(campaign=campaign, branch=branch, chosen=chosen, now=now)


def fetch_branch_tool_answers(
    *, campaign: Campaign, now: datetime, answers: ToolAnswers, lead_ids=None
) -> ToolAnswers:
    """Call the API tools the branch step's conditions need for the leads it
    decides next (the same batch `decide_branches` takes), before any row lock
    is taken: outside a transaction. Nothing is decided here."""
    branch = branch_step(campaign)
    if branch is None or not any(
        rule.get("type") == "api_tool" for rule in branch.branch_conditions or []
    ):
        return answers
    due = _due(campaign, branch, now, lead_ids)
    if not due:
        return answers
    stopped = stop_reasons(campaign, [lead_id for lead_id, _ in due])
    conditions = [Rule.from_dict(rule) for rule in branch.branch_conditions]

    def judge():
        for _ in _choose(campaign, branch, conditions, due, stopped, now, answers):
            pass

    return gather_tool_answers(judge, answers, campaign.workspace)


def _due(campaign: Campaign, branch: Step, now: datetime, lead_ids) -> list[tuple[str, datetime]]:
    """(lead id, when the step before reached the lead) of the leads to decide this
    round: at most CONDITION_BATCH, the same ones each time (by lead id)."""
    reached = (
        Message.objects.filter(
            campaign_id=campaign.pk, step_index=branch.position - 1, status__in=DONE
        )
        .filter(
            Exists(
                Enrollment.objects.filter(
                    campaign_id=campaign.pk,
                    lead_id=OuterRef("lead_id"),
                    state=Enrollment.State.ACTIVE,
                )
            )
        )
        .exclude(
            Exists(
                BranchDecision.objects.filter(
                    campaign_id=campaign.pk, lead_id=OuterRef("lead_id"), step=branch
                )
            )
        )
    )
    if lead_ids is not None:
        reached = reached.filter(lead_id__in=list(lead_ids))
    due = []
    rows = reached.order_by("lead_id").values_list("lead_id", "sent_at", "updated_at")
    for lead_id, sent_at, updated_at in rows:
        at = sent_at or updated_at
        if at + branch.delay_timedelta <= now:
            due.append((lead_id, at))
        if len(due) >= CONDITION_BATCH:
            break
    return due


def _choose(campaign, branch, conditions, due, stopped, now, tool_answers):
    """(enrollment, lead, path index or None, outcome) for each due lead not stopped."""
    leads = Lead.objects.in_bulk([lead_id for lead_id, _ in due])
    enrollments = {
        e.lead_id: e
        for e in Enrollment.objects.filter(
            campaign_id=campaign.pk, lead_id__in=[lead_id for lead_id, _ in due]
        )
    }
    tags = page_tags(conditions, [lead_id for lead_id, _ in due])
    for lead_id, sent_at in due:
        if lead_id in stopped:
            continue
        enrollment = enrollments[lead_id]
        context = Context(
            workspace=campaign.workspace,
            lead=leads[lead_id],
            now=now,
            campaign_id=campaign.pk,
            since=enrollment.enrolled_at,
            last_sent_at=sent_at,
            step=branch,
            call_tools=False,
            tool_answers=tool_answers,
            tags=tags[lead_id] if tags is not None else None,
        )
        index, outcome = choose_branch(conditions, context)
        yield enrollment, leads[lead_id], index, outcome


def _paths(branch: Step) -> dict[int, list[Step]]:
    paths: dict[int, list[Step]] = {}
    for step in branch.path_steps.order_by("position"):
        paths.setdefault(step.path, []).append(step)
    return paths


@dataclass(frozen=True)
class Choice:
    """The path chosen for one lead at a branch, with the condition that chose it."""

    enrollment: Enrollment
    lead: Lead
    path: int
    condition_type: str
    detail: str


def branch_record_all(
    *, campaign: Campaign, branch: Step, chosen: list[Choice], now: datetime
) -> int:
    """Record the paths of a page of leads and write their messages, held, with a
    few statements for the whole page; returns how many were recorded. A lead that
    already has a path at this branch keeps it. When another worker records one
    of them meanwhile, the unique decision refuses the page and each lead is
    recorded on its own (`branch_record`), so each still takes one path."""
    if not chosen:
        return 0
    paths = _paths(branch)
    try:
        with transaction.atomic():
            decided = set(
                BranchDecision.objects.filter(
                    step=branch, enrollment_id__in=[c.enrollment.pk for c in chosen]
                ).values_list("enrollment_id", flat=True)
            )
            chosen = [c for c in chosen if c.enrollment.pk not in decided]
            BranchDecision.objects.bulk_create(
                [
                    BranchDecision(
                        enrollment=c.enrollment,
                        step=branch,
                        campaign=campaign,
                        lead=c.lead,
                        path=c.path,
                        condition_type=c.condition_type,
                        detail=c.detail[:300],
                        decided_at=now,
                    )
                    for c in chosen
                ],
                batch_size=500,
            )
            rows = {path: MessageRows(campaign, steps) for path, steps in paths.items() if steps}
            insert_messages(
                row
                for c in chosen
                if c.path in rows
                for row in rows[c.path].for_lead(
                    lead=c.lead,
                    line_id=c.enrollment.line_id,
                    batch_id=c.enrollment.batch_id,
                    first_due=None,
                    now=now,
                )
            )
    except IntegrityError:
        return sum(
            branch_record(
                campaign=campaign,
                branch=branch,
                enrollment=c.enrollment,
                lead=c.lead,
                path=c.path,
                condition_type=c.condition_type,
                detail=c.detail,
                path_steps=paths.get(c.path, []),
                now=now,
            )
            for c in chosen
        )
    return len(chosen)


def branch_record(
    *,
    campaign: Campaign,
    branch: Step,
    enrollment: Enrollment,
    lead: Lead,
    path: int,
    condition_type: str,
    detail: str,
    path_steps: list[Step],
    now: datetime,
) -> bool:
    """Record the lead's path and write its messages, held; False (and nothing
    written) when the lead already has a path at this branch."""
    try:
        with transaction.atomic():
            BranchDecision.objects.create(
                enrollment=enrollment,
                step=branch,
                campaign=campaign,
                lead=lead,
                path=path,
                condition_type=condition_type,
                detail=detail[:300],
                decided_at=now,
            )
            if path_steps:
                insert_messages(
                    MessageRows(campaign, path_steps).for_lead(
                        lead=lead,
                        line_id=enrollment.line_id,
                        batch_id=enrollment.batch_id,
                        first_due=None,
                        now=now,
                    )
                )
    except IntegrityError:
        return False
    return True
