"""Writes on campaigns: create, update, start / pause / resume / retry, enroll, tick.

The sequence rules (when each step's message becomes due) are in
campaigns.sequencing, line assignment and the per-line gate in campaigns.pacing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from types import EllipsisType
from typing import Literal, get_args

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from campaigns import conditions, pacing
from campaigns.branching import decide_branches, fetch_branch_tool_answers
from campaigns.conditions import (
    Context,
    Outcome,
    Rule,
    ToolAnswers,
    evaluate,
)
from campaigns.enrollment import (
    MessageRows,
    dnc_values,
    enroll_list,
    first_send_time,
    insert_messages,
    stop_reason,
    talking_lines,
)
from campaigns.models import ApiTool, Campaign, Enrollment
from campaigns.sequencing import (
    AFTER_FAILURE,
    OPEN,
    WAITING,
    advance_sequences,
    awaiting_branch,
    fetch_tool_answers,
    finish_enrollments,
    stop_leads,
    stop_reasons,
)

# The step limits, re-exported: they used to live here.
from campaigns.steps import MAX_DELAY as MAX_DELAY
from campaigns.steps import MAX_STEPS as MAX_STEPS
from campaigns.steps import (
    StepSpec,
    check_steps,
    message_steps,
    sent_steps,
    steps_apply_to_waiting,
    steps_write,
)
from leads.models import Lead, LeadList, ListMembership
from lines.models import Line
from messaging import templating
from messaging.models import FallbackConfig, Message
from tuco.errors import Conflict, NotFound, ServiceError, ValidationFailed
from tuco.ids import looks_like_id, new_id

CAMPAIGN_NOT_FOUND = "Campaign not found"
LEAD_NOT_FOUND = "Lead not found"
# Refresh planner statistics after a bulk enrollment of at least this many leads.
ANALYZE_AFTER = 10_000
Action = Literal["start", "pause", "resume", "retry_failed"]
ACTIONS: tuple[Action, ...] = get_args(Action)


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class CampaignSettings:
    """Campaign settings to set; None leaves a setting as it is (or at its default)."""

    send_immediately: bool | None = None
    randomize_order: bool | None = None
    timezone: str | None = None
    send_window_start: str | None = None
    send_window_end: str | None = None
    allowed_days: list[int] | None = None
    reply_behavior: str | None = None

    def model_fields(self) -> dict:
        return {name: value for name, value in asdict(self).items() if value is not None}


def _check_twilio(workspace, steps: list[StepSpec]) -> None:
    """SMS steps and SMS fallback texts need the workspace's Twilio setup, as
    `POST /api/messages` requires: refused now rather than failing at send time."""
    needs = [
        (where, "smsFallbackMessage" if s.sms_fallback_message else "messageType")
        for where, s in message_steps(steps)
        if s.sms_fallback_message or s.message_type == "sms"
    ]
    if not needs:
        return
    config = FallbackConfig.objects.filter(workspace=workspace).first()
    if config is not None and config.is_configured:
        return
    where, field = needs[0]
    what = "An SMS fallback" if field == "smsFallbackMessage" else "An SMS step"
    raise ServiceError(
        f"{what} needs Twilio: configure it with PATCH /api/workspace/fallback-config",
        field=f"{where}.{field}",
        code="FALLBACK_NOT_CONFIGURED",
    )


def _check_variables(workspace, steps: list[StepSpec]) -> None:
    """Every placeholder of a step's texts names a variable: a lead field, line_name,
    custom.<key>, or api_<tool> of one of the workspace's API tools. A typo is refused
    now rather than sent as its fallback (or nothing) to every lead."""
    tool_names = None
    for where, step in message_steps(steps):
        for field, text in (
            ("message", step.message),
            ("smsFallbackMessage", step.sms_fallback_message),
        ):
            if "{" not in (text or ""):
                continue
            if tool_names is None:
                tool_names = set(
                    ApiTool.objects.filter(workspace=workspace).values_list(
                        "variable_name", flat=True
                    )
                )
            unknown = templating.unknown_placeholders(text, tool_names=tool_names)
            if not unknown:
                continue
            name = unknown[0]
            if name.startswith(templating.API_PREFIX):
                hint = "no API tool of this workspace has that variable"
            else:
                hint = (
                    "use firstName, lastName, companyName, jobTitle, email, phone, line_name, "
                    f"custom.<key> (e.g. {{custom.{name}}}) or api_<tool>"
                )
            raise ValidationFailed(f"Unknown variable {{{name}}}: {hint}", field=f"{where}.{field}")


def _check_window(campaign: Campaign) -> None:
    """A send window needs both ends (or neither): with one, the dispatcher would
    read it as no window at all."""
    start, end = campaign.send_window_start, campaign.send_window_end
    if bool(start) != bool(end):
        missing = "sendWindowEnd" if start else "sendWindowStart"
        raise ValidationFailed(
            "Give both ends of the send window, or neither", field=f"settings.{missing}"
        )


def _resolve_list(workspace, list_id: str | None) -> LeadList | None:
    if not list_id:
        return None
    found = (
        LeadList.objects.filter(workspace=workspace, pk=list_id).first()
        if looks_like_id(list_id)
        else None
    )
    if found is None:
        raise NotFound("List not found")
    return found


def _resolve_lines(workspace, line_ids: list[str]) -> list[Line]:
    wanted = list(dict.fromkeys(line_ids))
    found = {
        line.pk: line
        for line in Line.objects.filter(
            workspace=workspace, pk__in=[i for i in wanted if looks_like_id(i)]
        )
    }
    for line_id in wanted:
        if line_id not in found:
            raise NotFound("Line not found")
    return [found[i] for i in wanted]


def campaign_get_locked(*, workspace, campaign_id) -> Campaign:
    """The workspace's campaign, row locked (call inside a transaction)."""
    campaign = None
    if looks_like_id(campaign_id):
        campaign = (
            Campaign.objects.select_for_update(no_key=True)
            .filter(workspace=workspace, pk=campaign_id)
            .first()
        )
    if campaign is None:
        raise NotFound(CAMPAIGN_NOT_FOUND)
    return campaign


# --------------------------------------------------------------------------- create / update


@transaction.atomic
def campaign_create(
    *,
    workspace,
    name: str,
    steps: list[StepSpec],
    list_id: str | None = None,
    line_ids: list[str] | None = None,
    settings: CampaignSettings = CampaignSettings(),
    now: datetime | None = None,
) -> Campaign:
    """A draft campaign. The input is validated by the caller (the API's input
    serializer, the dashboard's forms); this checks what needs the workspace."""
    now = now or timezone.now()
    campaign = Campaign(
        workspace=workspace,
        name=name,
        lead_list=_resolve_list(workspace, list_id),
        created_at=now,
        updated_at=now,
        **settings.model_fields(),
    )
    _check_window(campaign)
    check_steps(workspace, steps)
    _check_variables(workspace, steps)
    _check_twilio(workspace, steps)
    lines = _resolve_lines(workspace, line_ids or [])
    campaign.save(force_insert=True)
    steps_write(campaign, steps)
    campaign.lines.set(lines)
    return campaign


UNCHANGED = ...


@transaction.atomic
def campaign_update(
    *,
    workspace,
    campaign_id: str,
    name: str | None = None,
    steps: list[StepSpec] | None = None,
    list_id: str | None | EllipsisType = UNCHANGED,
    line_ids: list[str] | None = None,
    settings: CampaignSettings = CampaignSettings(),
    now: datetime | None = None,
) -> Campaign:
    """Change a campaign (None, or UNCHANGED for `list_id`, keeps a value). New
    steps apply to leads that have not reached them (messages not yet sent are
    rewritten, added steps written, removed steps' messages deleted); new settings
    (window, days, time zone, reply behavior) also apply to messages still waiting."""
    now = now or timezone.now()
    campaign = campaign_get_locked(workspace=workspace, campaign_id=campaign_id)
    if name is not None:
        campaign.name = name
    if list_id is not UNCHANGED:
        campaign.lead_list = _resolve_list(workspace, list_id)
    setting_fields = settings.model_fields()
    for field, value in setting_fields.items():
        setattr(campaign, field, value)
    _check_window(campaign)
    if steps is not None:
        check_steps(workspace, steps)
        _check_variables(workspace, steps)
        _check_twilio(workspace, steps)
        steps_write(campaign, steps)
        if campaign.enrollments.exists():
            steps_apply_to_waiting(campaign, now)
    if line_ids is not None:
        campaign.lines.set(_resolve_lines(workspace, line_ids))
    campaign.updated_at = now
    campaign.save()
    if setting_fields:
        Message.objects.filter(campaign_id=campaign.pk, status__in=WAITING).update(
            timezone=campaign.timezone or workspace.timezone,
            send_window_start=campaign.send_window_start,
            send_window_end=campaign.send_window_end,
            allowed_days=list(campaign.allowed_days),
            stop_on_reply=campaign.stop_on_reply,
            updated_at=now,
        )
    return campaign


# --------------------------------------------------------------------------- actions


def campaign_action(
    *, workspace, campaign_id: str, action: Action, now: datetime | None = None
) -> Campaign:
    handler = {
        "start": campaign_start,
        "pause": campaign_pause,
        "resume": campaign_resume,
        "retry_failed": campaign_retry_failed,
    }[action]
    return handler(workspace=workspace, campaign_id=campaign_id, now=now)


def _tick_on_commit() -> None:
    def queue():
        from campaigns.tasks import campaigns_tick

        campaigns_tick.delay()

    transaction.on_commit(queue, robust=True)


def campaign_start(*, workspace, campaign_id, now: datetime | None = None) -> Campaign:
    """Enroll the campaign's list (in bulk) and let its first steps through."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = campaign_get_locked(workspace=workspace, campaign_id=campaign_id)
        if campaign.status != Campaign.Status.DRAFT:
            raise Conflict(f"Campaign is {campaign.status}; only a draft can be started")
        lines = pacing.usable_lines(campaign)
        if not lines:
            raise ServiceError(
                "No healthy line for this campaign: add an active line that is not down",
                code="NO_HEALTHY_LINE",
            )
        steps = sent_steps(campaign)
        campaign.status = Campaign.Status.ACTIVE
        campaign.started_at = now
        campaign.updated_at = now
        campaign.save(update_fields=["status", "started_at", "updated_at"])
        # Leads enrolled while it was a draft start now.
        Message.objects.filter(
            campaign_id=campaign.pk, step_index=0, status="scheduled", scheduled_date__isnull=True
        ).update(scheduled_date=first_send_time(campaign, steps, now), updated_at=now)
        enrolled = enroll_list(
            campaign=campaign,
            steps=steps,
            lines=pacing.rotation(campaign, lines),
            start=now,
            now=now,
        )
        _tick_on_commit()
    if enrolled >= ANALYZE_AFTER:
        # Planner statistics from before a bulk insert this size would steer the
        # dispatcher's and the sweep's queries to bad plans until they are next
        # gathered (Postgres's autovacuum; never, on SQLite).
        with connection.cursor() as cursor:
            for model in (Message, Enrollment):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    pacing.assign_lines(campaign=campaign)
    return campaign


def campaign_pause(*, workspace, campaign_id, now: datetime | None = None) -> Campaign:
    """Stop new sends at once: every waiting message goes back to held.

    Rows the dispatcher already claimed (`sending`) finish; nothing else of this
    campaign is claimed until resume.
    """
    now = now or timezone.now()
    with transaction.atomic():
        campaign = campaign_get_locked(workspace=workspace, campaign_id=campaign_id)
        if campaign.status != Campaign.Status.ACTIVE:
            raise Conflict(f"Campaign is {campaign.status}; only an active campaign can be paused")
        campaign.status = Campaign.Status.PAUSED
        campaign.paused_at = now
        campaign.updated_at = now
        campaign.save(update_fields=["status", "paused_at", "updated_at"])
        Message.objects.filter(campaign_id=campaign.pk, status__in=WAITING, held=False).update(
            status="scheduled", held=True, updated_at=now
        )
    return campaign


def campaign_resume(*, workspace, campaign_id, now: datetime | None = None) -> Campaign:
    """Continue where the campaign stopped: the sequence rules re-release what was held."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = campaign_get_locked(workspace=workspace, campaign_id=campaign_id)
        if campaign.status != Campaign.Status.PAUSED:
            raise Conflict(f"Campaign is {campaign.status}; only a paused campaign can be resumed")
        campaign.status = Campaign.Status.ACTIVE
        campaign.paused_at = None
        campaign.updated_at = now
        campaign.save(update_fields=["status", "paused_at", "updated_at"])
        advance_sequences(campaign=campaign, now=now)
        _tick_on_commit()
    return campaign


def campaign_retry_failed(*, workspace, campaign_id, now: datetime | None = None) -> Campaign:
    """Hold the campaign's failed messages again so they go out once more, and bring
    back the steps cancelled behind them; nothing else moves.

    A lead who replied since (replyBehavior "stop"), opted out or went on the
    do-not-contact list is stopped instead, and a stopped enrollment stays stopped.
    """
    now = now or timezone.now()
    with transaction.atomic():
        campaign = campaign_get_locked(workspace=workspace, campaign_id=campaign_id)
        if campaign.status == Campaign.Status.DRAFT:
            raise Conflict("Campaign is draft; start it first")
        failed_leads = sorted(
            Message.objects.filter(campaign_id=campaign.pk, status="failed", lead__isnull=False)
            .values_list("lead_id", flat=True)
            .distinct()
        )
        retried = []
        for chunk in _chunks(failed_leads, 1000):
            retried.extend(_retry_leads(campaign, chunk, now))
        if not retried:
            return campaign
        if campaign.status == Campaign.Status.COMPLETED:
            campaign.status = Campaign.Status.ACTIVE
            campaign.completed_at = None
        campaign.updated_at = now
        campaign.save(update_fields=["status", "completed_at", "updated_at"])
        if campaign.status == Campaign.Status.ACTIVE:
            for chunk in _chunks(retried, 1000):
                advance_sequences(campaign=campaign, lead_ids=chunk, now=now)
            _tick_on_commit()
    return campaign


def _retry_leads(campaign: Campaign, lead_ids: list[str], now: datetime) -> list[str]:
    """Re-queue these leads' failed messages (see campaign_retry_failed); returns the
    leads whose sequence goes on."""
    reasons = stop_reasons(campaign, lead_ids)
    if reasons:
        stop_leads(campaign=campaign, reasons=reasons, now=now)
    stopped = set(
        Enrollment.objects.filter(
            campaign_id=campaign.pk, lead_id__in=lead_ids, state=Enrollment.State.STOPPED
        ).values_list("lead_id", flat=True)
    )
    lead_ids = [lead_id for lead_id in lead_ids if lead_id not in stopped]
    if not lead_ids:
        return []
    reset = {
        "status": "scheduled",
        "held": True,
        "attempts": 0,
        "error_message": "",
        "failed_at": None,
        "updated_at": now,
    }
    # The send pipeline's per-attempt bookkeeping starts afresh for a new attempt.
    for name in ("send_claimed_at", "channel_called_at", "usage_taken_at", "sending_started_at"):
        if any(f.name == name for f in Message._meta.concrete_fields):
            reset[name] = None
    mine = Message.objects.filter(campaign_id=campaign.pk, lead_id__in=lead_ids)
    mine.filter(status="failed").update(**reset)
    mine.filter(status="cancelled", cancel_reason=AFTER_FAILURE).update(
        status="scheduled", held=True, cancel_reason="", updated_at=now
    )
    mine.filter(step_index=0, status="scheduled", scheduled_date__isnull=True).update(
        scheduled_date=now
    )
    Enrollment.objects.filter(campaign_id=campaign.pk, lead_id__in=lead_ids).update(
        state=Enrollment.State.ACTIVE, finished_at=None
    )
    return lead_ids


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --------------------------------------------------------------------------- enrollment


@dataclass
class EnrollResult:
    lead: Lead
    campaign: Campaign
    message_count: int
    already: bool
    # Why nothing will be sent (opted out, do-not-contact); "" when the sequence runs.
    cancel_reason: str = ""


def _lead_for_enrollment(
    *, workspace, campaign, lead_id: str | None, lead_data: dict | None
) -> Lead:
    if lead_id:
        lead = None
        if looks_like_id(lead_id):
            lead = Lead.objects.filter(workspace=workspace, pk=lead_id).first()
        if lead is None:
            raise NotFound(LEAD_NOT_FOUND)
        return lead
    if lead_data is None:
        raise ValueError("an enrollment needs lead_id or lead_data")
    from leads.services import ContactOwners, lead_get_or_create

    lead, _created = lead_get_or_create(
        workspace=workspace,
        data=lead_data,
        lead_list=campaign.lead_list,
        source="campaign",
        field="lead",
        contact_owners=ContactOwners(workspace),
    )
    return lead


def campaign_enroll_lead(
    *,
    workspace,
    campaign_id: str,
    lead_id: str | None = None,
    lead_data: dict | None = None,
    now: datetime | None = None,
) -> EnrollResult:
    """Add one lead (existing, or matched / created from `lead_data`) to a campaign.

    A lead is enrolled at most once per campaign (unique constraint); a repeat
    returns `already=True` and writes nothing.
    """
    now = now or timezone.now()
    with transaction.atomic():
        campaign = campaign_get_locked(workspace=workspace, campaign_id=campaign_id)
        lead = _lead_for_enrollment(
            workspace=workspace, campaign=campaign, lead_id=lead_id, lead_data=lead_data
        )
        steps = sent_steps(campaign)
        if campaign.status == Campaign.Status.COMPLETED:
            campaign.status = Campaign.Status.ACTIVE
            campaign.completed_at = None
            campaign.save(update_fields=["status", "completed_at"])
        lines = pacing.usable_lines(campaign)
        talking = talking_lines(workspace.pk, [lead], [x.pk for x in lines]).get(lead.pk)
        line = next((x for x in lines if x.pk == talking), None) or next(
            pacing.round_robin(campaign, lines), None
        )
        reason = stop_reason(lead, dnc_values(workspace.pk))
        batch_id = new_id()
        try:
            with transaction.atomic():
                Enrollment.objects.create(
                    workspace=workspace,
                    campaign=campaign,
                    lead=lead,
                    line=line,
                    batch_id=batch_id,
                    enrolled_at=now,
                    state="stopped" if reason else "active",
                    finished_at=now if reason else None,
                )
        except IntegrityError:
            return EnrollResult(lead=lead, campaign=campaign, message_count=0, already=True)
        if campaign.lead_list_id:
            ListMembership.objects.bulk_create(
                [ListMembership(lead_list_id=campaign.lead_list_id, lead=lead, created_at=now)],
                ignore_conflicts=True,
            )
        first_due = (
            None
            if campaign.status == Campaign.Status.DRAFT
            else first_send_time(campaign, steps, now)
        )
        builder = MessageRows(campaign, steps)
        rows = list(
            builder.for_lead(
                lead=lead,
                line_id=line.pk if line else None,
                batch_id=batch_id,
                first_due=first_due,
                now=now,
                cancel_reason=reason,
            )
        )
        insert_messages(rows)
        if campaign.status == Campaign.Status.ACTIVE:
            _tick_on_commit()
    return EnrollResult(
        lead=lead,
        campaign=campaign,
        message_count=len(rows),
        already=False,
        cancel_reason=reason,
    )


# --------------------------------------------------------------------------- the tick


def _complete_if_done(campaign: Campaign, now: datetime) -> bool:
    """Complete an active campaign once none of its messages is pending, scheduled
    or sending (call with its row locked).

    Steps behind a failed step are cancelled when it fails (campaigns.sequencing),
    so a stall never keeps a campaign open. A campaign with no message at all (an
    empty list, leads still to come through the API) stays active: completing it
    on its first tick would only make the first added lead re-open it.
    """
    messages = Message.objects.filter(campaign_id=campaign.pk)
    if messages.filter(status__in=OPEN).exists() or not messages.exists():
        return False
    if awaiting_branch(campaign).exists():
        return False
    finish_enrollments(campaign=campaign, now=now)
    campaign.status = Campaign.Status.COMPLETED
    campaign.completed_at = now
    campaign.updated_at = now
    campaign.save(update_fields=["status", "completed_at", "updated_at"])
    return True


def campaigns_tick(*, now: datetime | None = None) -> list[str]:
    """One pacing round over every active campaign; returns the message ids released.

    Moves not-yet-contacted leads off lines that went down, releases follow-up
    steps whose predecessor went out (a safety net for missed signals), lets
    first steps through each line's gate (oldest campaign first), hands released
    rows to the dispatcher, and completes campaigns with nothing left.
    """
    from messaging.services import dispatch_on_commit

    now = now or timezone.now()
    active = Campaign.objects.filter(status=Campaign.Status.ACTIVE)
    answers: dict[str, ToolAnswers] = {}
    for campaign in active:
        pacing.assign_lines(campaign=campaign)
        # The API tools the due steps' conditions need, called before the locks
        # below: no row lock is held during a call to a customer's API.
        answers[campaign.pk] = fetch_tool_answers(campaign=campaign, now=now)
        fetch_branch_tool_answers(campaign=campaign, now=now, answers=answers[campaign.pk])
    released: list[str] = []
    with transaction.atomic():
        campaigns = list(
            active.select_for_update(no_key=True).order_by("started_at", "created_at", "pk")
        )
        for campaign in campaigns:
            tool_answers = answers.get(campaign.pk)
            decide_branches(campaign=campaign, now=now, tool_answers=tool_answers)
            advance_sequences(campaign=campaign, now=now, tool_answers=tool_answers)
        released = pacing.release_first_steps(campaigns=campaigns, now=now)
        due_now = list(
            Message.objects.filter(
                campaign_id__in=[c.pk for c in campaigns],
                status__in=WAITING,
                held=False,
                due_at__lte=now,
            ).values_list("pk", flat=True)[:5000]
        )
        for campaign in campaigns:
            _complete_if_done(campaign, now)
        dispatch_on_commit(dict.fromkeys(released + due_now))
    return released


# --------------------------------------------------------------------------- conditions


@dataclass
class Evaluation:
    """Each stop rule and each branch condition with its outcome, in the order given."""

    stop: list[tuple[Rule, Outcome]]
    branches: list[tuple[Rule, Outcome]]


def conditions_evaluate(
    *,
    workspace,
    lead_id: str,
    stop_rules: list[Rule],
    branch_conditions: list[Rule],
    now: datetime | None = None,
) -> Evaluation:
    """Judge every rule and condition for the lead, now (API tools are called live),
    outside any campaign: a reply counts whenever it came, any message that
    reached the lead makes it "contacted before", and "no reply for" counts from
    the last one. A "no reply for" that cannot answer yet is false, saying until when."""
    lead = (
        Lead.objects.filter(workspace=workspace, pk=lead_id).first()
        if looks_like_id(lead_id)
        else None
    )
    if lead is None:
        raise NotFound(LEAD_NOT_FOUND)
    for field, rules in (("stopRules", stop_rules), ("branchConditions", branch_conditions)):
        for i, rule in enumerate(rules):
            why = (
                conditions.unknown_tool(workspace, rule.tool_id) if rule.type == "api_tool" else ""
            )
            if why:
                raise ValidationFailed(why, field=f"{field}.{i}.toolId")
    context = Context(workspace=workspace, lead=lead, now=now or timezone.now())
    return Evaluation(
        stop=[(rule, evaluate(rule, context)) for rule in stop_rules],
        branches=[(rule, evaluate(rule, context)) for rule in branch_conditions],
    )
