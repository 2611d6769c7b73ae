"""A campaign's steps as given (StepSpec), checked, and stored as Step rows; and the
edit of a running campaign's steps, which applies to leads that have not reached them.

The main sequence is message steps, optionally ending in one branch step. A branch
step waits its delay after the step before it, then sends each lead down one path:
the first of its conditions that is true (`default`, the last, catches the rest).
A path is message steps of its own (none: the lead's sequence ends there).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from django.db.models import Exists, OuterRef, Q, Subquery

from campaigns import conditions
from campaigns.conditions import Rule
from campaigns.enrollment import MessageRows, addressed_by, insert_messages
from campaigns.models import PATH_BASE, BranchDecision, Campaign, Enrollment, Step
from leads.models import Lead
from messaging.models import Message
from tuco.errors import Conflict, ValidationFailed
from tuco.ids import new_id

MAX_STEPS = 20
MAX_RULES = 10
MAX_BRANCHES = 10
MAX_DELAY = {"minutes": 60 * 24 * 365, "hours": 24 * 365, "days": 365}
STEP_REMOVED = "Step removed from the campaign"


@dataclass(frozen=True)
class BranchSpec:
    """One path of a branch step: its condition and its steps."""

    condition: Rule
    steps: tuple[StepSpec, ...] = ()


@dataclass(frozen=True)
class StepSpec:
    """One step of a campaign's sequence, as given (validated by the caller)."""

    message: str = ""
    delay: int = 0
    delay_unit: str = Step.DelayUnit.DAYS
    message_type: str = "imessage"
    sms_fallback_message: str = ""
    # Judged when the step comes due (steps 2 on): campaigns.conditions.Rule.
    stop_rules: tuple[Rule, ...] = ()
    kind: str = Step.Kind.MESSAGE
    branches: tuple[BranchSpec, ...] = ()

    @property
    def is_branch(self) -> bool:
        return self.kind == Step.Kind.BRANCH


def message_steps(steps: list[StepSpec]):
    """(field path, step) for every message step, main and path ones."""
    for i, step in enumerate(steps):
        if step.is_branch:
            for j, branch in enumerate(step.branches):
                for k, sub in enumerate(branch.steps):
                    yield f"steps[{i}].branches[{j}].steps[{k}]", sub
        else:
            yield f"steps[{i}]", step


# --------------------------------------------------------------------------- checks


def check_steps(workspace, steps: list[StepSpec]) -> None:
    """The shape of the sequence (a message first, a branch only last and with a
    Default path, message steps only in paths), the limits, and the API tools the
    conditions name; ValidationFailed names the field."""
    if not steps:
        raise ValidationFailed("At least one step is required", field="steps")
    if len(steps) > MAX_STEPS:
        raise ValidationFailed(f"At most {MAX_STEPS} steps are allowed", field="steps")
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        if step.is_branch:
            if i == 0:
                raise ValidationFailed(
                    "A campaign starts with a message step", field=f"{where}.type"
                )
            if i != len(steps) - 1:
                raise ValidationFailed(
                    "A branch ends the main sequence: put the steps after it in its paths",
                    field=f"{where}.type",
                )
            _check_branch(workspace, step, where)
        else:
            _check_message_step(workspace, step, where, first=i == 0)


def _check_message_step(workspace, step: StepSpec, where: str, *, first: bool) -> None:
    if step.branches:
        raise ValidationFailed("Only a branch step has branches", field=f"{where}.branches")
    if not step.message.strip():
        raise ValidationFailed("A step needs a message", field=f"{where}.message")
    _check_delay(step, where)
    if first and step.stop_rules:
        raise ValidationFailed(
            "Stop conditions apply from step 2 on: step 1 always sends",
            field=f"{where}.stopRules",
        )
    if len(step.stop_rules) > MAX_RULES:
        raise ValidationFailed(
            f"At most {MAX_RULES} stop conditions per step", field=f"{where}.stopRules"
        )
    for j, rule in enumerate(step.stop_rules):
        _check_tool(workspace, rule, f"{where}.stopRules[{j}]")


def _check_delay(step: StepSpec, where: str) -> None:
    if step.delay < 0:
        raise ValidationFailed("Must be a whole number, 0 or more", field=f"{where}.delay")
    limit = MAX_DELAY[step.delay_unit]
    if step.delay > limit:
        raise ValidationFailed(f"At most {limit} {step.delay_unit}", field=f"{where}.delay")


def _check_branch(workspace, step: StepSpec, where: str) -> None:
    _check_delay(step, where)
    if step.stop_rules:
        raise ValidationFailed(
            "A branch step has no stop conditions: give them to the steps of its paths",
            field=f"{where}.stopRules",
        )
    branches = step.branches
    if len(branches) > MAX_BRANCHES:
        raise ValidationFailed(
            f"At most {MAX_BRANCHES} paths per branch", field=f"{where}.branches"
        )
    defaults = [j for j, b in enumerate(branches) if b.condition.type == "default"]
    if not defaults:
        raise ValidationFailed(
            "A branch needs a Default path, for leads no condition matches",
            field=f"{where}.branches",
        )
    if len(branches) < 2:
        raise ValidationFailed(
            "A branch needs a condition besides Default", field=f"{where}.branches"
        )
    if defaults != [len(branches) - 1]:
        raise ValidationFailed(
            "Default is the last path, and there is one",
            field=f"{where}.branches[{defaults[0]}].type",
        )
    for j, branch in enumerate(branches):
        path = f"{where}.branches[{j}]"
        _check_tool(workspace, branch.condition, path)
        if len(branch.steps) > MAX_STEPS:
            raise ValidationFailed(f"At most {MAX_STEPS} steps are allowed", field=f"{path}.steps")
        for k, sub in enumerate(branch.steps):
            if sub.is_branch:
                raise ValidationFailed(
                    "A branch path holds message steps only", field=f"{path}.steps[{k}].type"
                )
            _check_message_step(workspace, sub, f"{path}.steps[{k}]", first=False)


def _check_tool(workspace, rule: Rule, where: str) -> None:
    """Without a workspace (the API's input check) tools are checked later."""
    if workspace is None or rule.type != "api_tool":
        return
    if why := conditions.unknown_tool(workspace, rule.tool_id):
        raise ValidationFailed(why, field=f"{where}.toolId")


# --------------------------------------------------------------------------- rows


def _stored(rule: Rule) -> dict:
    """A rule as its step keeps it, with an id of its own (given or new)."""
    return replace(rule, id=rule.id or new_id()).as_dict()


def _fields(step: StepSpec) -> dict:
    return {
        "kind": step.kind,
        "message": "" if step.is_branch else step.message,
        "delay": step.delay,
        "delay_unit": step.delay_unit,
        "message_type": step.message_type,
        "sms_fallback_message": "" if step.is_branch else step.sms_fallback_message,
        "stop_rules": [_stored(rule) for rule in step.stop_rules],
        "branch_conditions": [_stored(b.condition) for b in step.branches],
    }


def planned_rows(steps: list[StepSpec]) -> list[tuple[int, int | None, int | None, dict]]:
    """(position, parent position, path, fields) of every Step row, parents first."""
    rows = []
    for i, step in enumerate(steps):
        rows.append((i, None, None, _fields(step)))
        for j, branch in enumerate(step.branches):
            for k, sub in enumerate(branch.steps):
                rows.append((PATH_BASE * (j + 1) + k, i, j, _fields(sub)))
    return rows


def steps_write(campaign: Campaign, steps: list[StepSpec]) -> list[Step]:
    """Write the campaign's Step rows for `steps`, keeping the rows (and so the
    decisions made at a branch) of the positions that stay; returns them in order."""
    existing = {step.position: step for step in campaign.steps.all()}
    planned = planned_rows(steps)
    wanted = {position for position, *_ in planned}
    kinds = {position: fields["kind"] for position, _, _, fields in planned}
    for position, step in existing.items():
        if (
            step.is_branch
            and kinds.get(position) != Step.Kind.BRANCH
            and BranchDecision.objects.filter(step=step).exists()
        ):
            raise Conflict(
                "Leads have already taken this branch: it stays at its place in the sequence",
                field=f"steps[{position}].type",
            )
    Step.objects.filter(campaign=campaign, parent__isnull=False).exclude(
        position__in=wanted
    ).delete()
    Step.objects.filter(campaign=campaign).exclude(position__in=wanted).delete()
    by_position: dict[int, Step] = {}
    for position, parent, path, fields in planned:
        row = existing.get(position) or Step(campaign=campaign, position=position)
        for name, value in fields.items():
            setattr(row, name, value)
        row.parent = by_position[parent] if parent is not None else None
        row.path = path
        row.save()
        by_position[position] = row
    return [by_position[position] for position, *_ in planned]


def sent_steps(campaign: Campaign) -> list[Step]:
    """The main sequence's message steps: those every enrollment writes up front."""
    steps = []
    for step in campaign.steps.filter(parent__isnull=True).order_by("position"):
        if step.is_branch:
            break
        steps.append(step)
    return steps


# --------------------------------------------------------------------------- running edits


def steps_apply_to_waiting(campaign: Campaign, now: datetime) -> None:
    """After an edit of a started campaign's steps: every message still waiting for a
    lead (a step it has not reached: held, or released and not yet claimed by the
    dispatcher) takes its step's new text, channel and SMS fallback; one whose
    step is gone is deleted (it was never sent); leads in the sequence get the
    messages of steps added on their way. The updates keep to waiting rows, so a
    message the dispatcher already claimed goes out as it was."""
    steps = {step.position: step for step in campaign.steps.all() if not step.is_branch}
    held = Message.objects.filter(campaign_id=campaign.pk, status__in=Message.WAITING)
    held.exclude(step_index__in=list(steps)).delete()
    lead = Lead.objects.filter(pk=OuterRef("lead_id"))
    for position, step in steps.items():
        by_phone, by_email = addressed_by(step)
        held.filter(step_index=position).exclude(
            body=step.message,
            message_type=step.message_type,
            sms_fallback_text=step.sms_fallback_message,
        ).update(
            body=step.message,
            message_type=step.message_type,
            sms_fallback_text=step.sms_fallback_message,
            send_fallback_sms_on_failed=bool(step.sms_fallback_message),
            recipient_phone=Subquery(lead.values("phone")) if by_phone else "",
            recipient_email=Subquery(lead.values("email")) if by_email else "",
            updated_at=now,
        )
    _add_missing_messages(campaign, now)


def _add_missing_messages(campaign: Campaign, now: datetime) -> None:
    """Write the messages of steps added to a running campaign for the leads in its
    sequence that have not gone past them: main steps for leads that have not
    reached a later step or the branch, a path's steps for the leads on that path
    that have not reached a later step of it."""
    main = sent_steps(campaign)
    path_steps = [
        step for step in campaign.steps.filter(parent__isnull=False).select_related("parent")
    ]
    active = Enrollment.objects.filter(campaign_id=campaign.pk, state=Enrollment.State.ACTIVE)
    mine = Message.objects.filter(campaign_id=campaign.pk, lead_id=OuterRef("lead_id"))
    # A lead has reached a step once its message left held (released, sent, cancelled).
    moved = ~Q(status="scheduled", held=True)
    for step in [*main, *path_steps]:
        if step.is_branch:
            continue
        lacking = active.exclude(Exists(mine.filter(step_index=step.position)))
        if step.parent_id is None:
            later = Q(step_index__gt=step.position) | Q(step_index__gte=PATH_BASE)
            lacking = lacking.exclude(
                Exists(BranchDecision.objects.filter(enrollment_id=OuterRef("pk")))
            )
        else:
            later = Q(step_index__gt=step.position, step_index__lt=PATH_BASE * (step.path + 2))
            lacking = lacking.filter(
                Exists(
                    BranchDecision.objects.filter(
                        enrollment_id=OuterRef("pk"), step_id=step.parent_id, path=step.path
                    )
                )
            )
        lacking = lacking.exclude(Exists(mine.filter(later).filter(moved)))
        builder = MessageRows(campaign, [step])
        for enrollment in lacking.select_related("lead").iterator(chunk_size=1000):
            insert_messages(
                builder.for_lead(
                    lead=enrollment.lead,
                    line_id=enrollment.line_id,
                    batch_id=enrollment.batch_id,
                    first_due=None,
                    now=now,
                )
            )
