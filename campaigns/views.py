"""Campaign pages: the list with stats, create / edit with steps, actions, and the
detail page with each lead's progress and sends per day."""

from datetime import timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from campaigns import selectors, services
from campaigns.conditions import BRANCH_TYPES, OPERATORS, STOP_TYPES
from campaigns.dryrun import PlayedReply, campaign_dry_run
from campaigns.forms import (
    CampaignForm,
    add_campaign_error,
    apply_step_op,
    nested_parts,
    new_step,
    posted_steps,
    step_formset,
    step_initial,
)
from campaigns.models import Campaign, Enrollment
from leads.availability import normalize_address
from leads.models import Lead, LeadIdentifier, LeadList
from lines.models import Line
from messaging.models import Message
from messaging.schedule import get_zone
from tuco.errors import NotFound, ServiceError
from tuco.ids import looks_like_id
from tuco.views import workspace_required

PAGE_SIZE = 25
ENROLLMENTS_PAGE_SIZE = 50
CHART_DAYS = 30
CHART_MIN_DAYS = 14
ACTION_DONE = {
    "start": "Campaign started.",
    "pause": "Campaign paused: nothing more goes out until you resume it.",
    "resume": "Campaign resumed.",
    "retry_failed": "Failed messages will be sent again.",
}


def _campaign(request, campaign_id) -> Campaign:
    try:
        return selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    except NotFound:
        raise Http404("Campaign not found") from None


@require_GET
@workspace_required
def campaign_list(request):
    paginator = Paginator(selectors.campaign_list(workspace=request.workspace), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    campaigns = list(page.object_list)
    stats = selectors.campaign_stats([c.pk for c in campaigns])
    for campaign in campaigns:
        campaign.stats = stats[campaign.pk]
    context = {"section": "campaigns", "campaigns": campaigns, "page": page}
    return render(request, "campaigns/list.html", context)


def _typed_form(data, **kwargs) -> CampaignForm:
    """The campaign form showing what was typed, without judging it yet."""
    form = CampaignForm(**kwargs)
    initial = {}
    for name, field in form.fields.items():
        if (
            hasattr(field.widget, "allow_multiple_selected")
            and field.widget.allow_multiple_selected
        ):
            initial[name] = data.getlist(name)
        elif field.widget.input_type == "checkbox":
            initial[name] = bool(data.get(name))
        else:
            initial[name] = data.get(name, "")
    form.initial = initial
    return form


def _edit_page(request, campaign: Campaign | None):
    workspace = request.workspace
    choices = {
        "lists": list(LeadList.objects.filter(workspace=workspace).order_by("name")),
        "lines": list(Line.objects.filter(workspace=workspace).order_by("created_at", "pk")),
    }
    status = 200
    typed: list[dict] = []
    if request.method == "POST":
        op = request.POST.get("step_op", "")
        if op:
            typed = apply_step_op(posted_steps(request.POST), op)
            steps = step_formset(initial=typed)
            form = _typed_form(request.POST, **choices)
        else:
            form = CampaignForm(request.POST, campaign=campaign, **choices)
            steps = step_formset(request.POST)
            typed = posted_steps(request.POST)
            steps_valid = steps.is_valid()
            if form.is_valid() and steps_valid:
                arguments = form.service_arguments()
                try:
                    arguments["steps"] = steps.steps(nested_parts(typed))
                    campaign = _save(workspace, campaign, arguments)
                except ServiceError as exc:
                    add_campaign_error(form, steps, exc, typed)
                else:
                    messages.success(request, f"Campaign “{campaign.name}” saved.")
                    return redirect("campaigns:detail", campaign_id=campaign.pk)
            status = 400
    else:
        form = CampaignForm(campaign=campaign, **choices)
        if campaign is None:
            typed = [new_step(first=True)]
            steps = step_formset(initial=typed)
        else:
            main = [s for s in campaign.steps.all() if s.parent_id is None]
            typed = [step_initial(s) for s in main]
            steps = step_formset(initial=typed)
    context = {
        "section": "campaigns",
        "campaign": campaign,
        "form": form,
        "steps": steps,
        "step_rows": list(zip(steps.forms, _padded(typed, len(steps.forms)), strict=True)),
        "running": campaign is not None and campaign.enrollments.exists(),
        "rule_types": STOP_TYPES,
        "branch_types": BRANCH_TYPES,
        "operators": OPERATORS,
    }
    return render(request, "campaigns/form.html", context, status=status)


def _padded(typed: list[dict], count: int) -> list[dict]:
    """The typed steps, one per step form, each nested part with its input names."""
    typed = (typed + [new_step() for _ in range(count)])[:count]
    for i, step in enumerate(typed):
        for j, rule in enumerate(step.setdefault("rules", [])):
            rule["prefix"] = f"steps-{i}-rule-{j}"
        for j, path in enumerate(step.setdefault("paths", [])):
            path["prefix"] = f"steps-{i}-path-{j}"
    return typed


def _save(workspace, campaign: Campaign | None, arguments: dict) -> Campaign:
    if campaign is None:
        return services.campaign_create(workspace=workspace, **arguments)
    return services.campaign_update(workspace=workspace, campaign_id=campaign.pk, **arguments)


@workspace_required
def campaign_create(request):
    return _edit_page(request, None)


@workspace_required
def campaign_edit(request, campaign_id):
    return _edit_page(request, _campaign(request, campaign_id))


@require_POST
@workspace_required
def campaign_action(request, campaign_id, action):
    campaign = _campaign(request, campaign_id)
    if action not in ACTION_DONE:
        raise Http404("Unknown action")
    try:
        services.campaign_action(
            workspace=request.workspace, campaign_id=campaign.pk, action=action
        )
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, ACTION_DONE[action])
    return redirect("campaigns:detail", campaign_id=campaign.pk)


def _lead_progress(campaign: Campaign, enrollments: list[Enrollment], step_count: int) -> None:
    """Attach each enrollment's current step and that step's message status."""
    rows = Message.objects.filter(
        campaign_id=campaign.pk, lead_id__in=[e.lead_id for e in enrollments]
    ).values_list(
        "lead_id",
        "step_index",
        "status",
        "error_message",
        "cancel_reason",
        "hold_reason",
        "scheduled_date",
    )
    by_lead: dict[str, list] = {}
    for lead_id, step_index, status, error, reason, hold, scheduled in rows:
        by_lead.setdefault(lead_id, []).append(
            (step_index or 0, status, error or reason, hold, scheduled)
        )
    for enrollment in enrollments:
        steps = sorted(by_lead.get(enrollment.lead_id, []))
        moved = [s for s in steps if s[1] not in Message.WAITING]
        current = moved[-1] if moved else (steps[0] if steps else None)
        enrollment.step_number = current[0] + 1 if current else None
        enrollment.step_status = current[1] if current else ""
        enrollment.step_error = current[2] if current else ""
        enrollment.step_count = step_count
        # A waiting step the dispatcher holds back (the frequency cap), and until when.
        held = [s for s in steps if s[1] in Message.WAITING and s[3]]
        enrollment.step_hold = held[0][3] if held else ""
        enrollment.step_hold_until = held[0][4] if held else None


def _sends_per_day(campaign: Campaign, zone) -> list[dict]:
    # The last two weeks, or since the start when that is longer (up to CHART_DAYS).
    today = timezone.now().astimezone(zone).date()
    first = today - timedelta(days=CHART_MIN_DAYS - 1)
    if campaign.started_at:
        started = campaign.started_at.astimezone(zone).date()
        first = max(min(first, started), today - timedelta(days=CHART_DAYS - 1))
    counts = dict(
        Message.objects.filter(
            campaign_id=campaign.pk,
            sent_at__isnull=False,
            sent_at__gte=timezone.now() - timedelta(days=CHART_DAYS + 1),
        )
        .annotate(day=TruncDate("sent_at", tzinfo=zone))
        .values_list("day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    days = [first + timedelta(days=i) for i in range((today - first).days + 1)]
    peak = max([counts.get(day, 0) for day in days] + [1])
    return [
        {"day": day, "count": counts.get(day, 0), "height": round(100 * counts.get(day, 0) / peak)}
        for day in days
    ]


@require_GET
@workspace_required
def campaign_detail(request, campaign_id):
    campaign = _campaign(request, campaign_id)
    steps = [step for step in campaign.steps.all() if step.parent_id is None]
    stats = selectors.campaign_stats([campaign.pk])[campaign.pk]
    enrollments = (
        Enrollment.objects.filter(campaign=campaign)
        .select_related("lead", "line")
        .order_by("enrolled_at", "pk")
    )
    page = Paginator(enrollments, ENROLLMENTS_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    _lead_progress(campaign, rows, len(steps))
    zone = get_zone(campaign.timezone or request.workspace.timezone)
    chart = _sends_per_day(campaign, zone) if campaign.started_at else []
    context = {
        "section": "campaigns",
        "campaign": campaign,
        "steps": steps,
        "stats": stats,
        "page": page,
        "enrollments": rows,
        "chart": chart,
        "chart_total": sum(d["count"] for d in chart),
        "zone": zone.key,
        "days": _days_label(campaign.allowed_days),
        "branches": selectors.branch_counts(campaign=campaign),
    }
    return render(request, "campaigns/detail.html", context)


@require_GET
@workspace_required
def campaign_lead(request, campaign_id, lead_id):
    """One lead's timeline in the campaign."""
    campaign = _campaign(request, campaign_id)
    enrollment = (
        Enrollment.objects.filter(campaign=campaign, lead_id=lead_id)
        .select_related("lead", "line")
        .first()
    )
    if enrollment is None:
        raise Http404("Lead not in this campaign")
    context = {
        "section": "campaigns",
        "campaign": campaign,
        "enrollment": enrollment,
        "lead": enrollment.lead,
        "timeline": selectors.lead_timeline(campaign=campaign, lead_id=enrollment.lead_id),
    }
    return render(request, "campaigns/lead.html", context)


MAX_PLAYED_REPLIES = 20


@require_POST
@workspace_required
def campaign_test(request, campaign_id):
    """The "Test with a lead" panel: the dry run's path, shown a step at a time
    ("fast-forward" shows the next), with the replies the operator played as the
    lead. Its state travels in the form: nothing is stored, nothing is sent."""
    campaign = _campaign(request, campaign_id)
    who = request.POST.get("lead", "").strip()
    context = {"campaign": campaign, "who": who, "error": ""}
    lead = _lead_for_test(request.workspace, who)
    if lead is None:
        context["error"] = "No lead with this phone number, email address or id."
        return render(request, "campaigns/_test_panel.html", context)
    replies = [
        PlayedReply(int(after), text.strip())
        for after, text in zip(
            request.POST.getlist("reply_after"), request.POST.getlist("reply_text"), strict=False
        )
        if after.isdigit() and text.strip()
    ][:MAX_PLAYED_REPLIES]
    shown = _int(request.POST.get("shown"), 1)
    action = request.POST.get("test_op", "")
    if action == "restart":
        replies, shown = [], 1
    run = campaign_dry_run(campaign=campaign, lead=lead, replies=replies)
    if action == "forward":
        shown += 1
    elif action == "reply" and request.POST.get("reply", "").strip():
        sent = len([s for s in run.steps[:shown] if s.kind == "message" and not s.stopped])
        if sent:
            replies.append(PlayedReply(sent, request.POST["reply"].strip()))
            run = campaign_dry_run(campaign=campaign, lead=lead, replies=replies)
            shown += 1
    shown = max(1, min(shown, len(run.steps)))
    context.update(
        lead=lead,
        run=run,
        steps=run.steps[:shown],
        shown=shown,
        more=shown < len(run.steps),
        replies=replies[:MAX_PLAYED_REPLIES],
    )
    return render(request, "campaigns/_test_panel.html", context)


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _lead_for_test(workspace, who: str) -> Lead | None:
    if not who:
        return None
    if looks_like_id(who):
        lead = Lead.objects.filter(workspace=workspace, pk=who).first()
        if lead is not None:
            return lead
    try:
        address = normalize_address(who)
    except ServiceError:
        return None
    found = LeadIdentifier.objects.filter(workspace=workspace, value=address).first()
    return found.lead if found else None


def _days_label(days) -> str:
    from campaigns.forms import DAYS

    if not days or len(days) == 7:
        return "Every day"
    names = dict(DAYS)
    return ", ".join(names[d] for d in sorted(days) if d in names)
