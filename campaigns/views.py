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
from campaigns.forms import (
    CampaignForm,
    add_campaign_error,
    apply_step_op,
    new_step,
    posted_steps,
    step_formset,
    step_initial,
)
from campaigns.models import Campaign, Enrollment
from leads.models import LeadList
from lines.models import Line
from messaging.models import Message
from messaging.schedule import get_zone
from tuco.errors import NotFound, ServiceError
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


def _steps_locked(campaign: Campaign | None) -> bool:
    return campaign is not None and (
        campaign.status != Campaign.Status.DRAFT or campaign.enrollments.exists()
    )


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
    locked = _steps_locked(campaign)
    status = 200
    if request.method == "POST":
        op = request.POST.get("step_op", "")
        if op and not locked:
            steps = step_formset(initial=apply_step_op(posted_steps(request.POST), op))
            form = _typed_form(request.POST, **choices)
        else:
            form = CampaignForm(request.POST, campaign=campaign, **choices)
            steps = None if locked else step_formset(request.POST)
            steps_valid = steps is None or steps.is_valid()
            if form.is_valid() and steps_valid:
                arguments = form.service_arguments()
                if steps is not None:
                    arguments["steps"] = steps.steps()
                try:
                    campaign = _save(workspace, campaign, arguments)
                except ServiceError as exc:
                    add_campaign_error(form, steps, exc)
                else:
                    messages.success(request, f"Campaign “{campaign.name}” saved.")
                    return redirect("campaigns:detail", campaign_id=campaign.pk)
            status = 400
    else:
        form = CampaignForm(campaign=campaign, **choices)
        if campaign is None:
            steps = step_formset(initial=[new_step(first=True)])
        else:
            steps = (
                None
                if locked
                else step_formset(initial=[step_initial(s) for s in campaign.steps.all()])
            )
    context = {
        "section": "campaigns",
        "campaign": campaign,
        "form": form,
        "steps": steps,
        "locked_steps": campaign.steps.all() if locked else None,
    }
    return render(request, "campaigns/form.html", context, status=status)


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
        "lead_id", "step_index", "status", "error_message", "hold_reason", "scheduled_date"
    )
    by_lead: dict[str, list] = {}
    for lead_id, step_index, status, error, hold, scheduled in rows:
        by_lead.setdefault(lead_id, []).append((step_index or 0, status, error, hold, scheduled))
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
    steps = list(campaign.steps.all())
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
    }
    return render(request, "campaigns/detail.html", context)


def _days_label(days) -> str:
    from campaigns.forms import DAYS

    if not days or len(days) == 7:
        return "Every day"
    names = dict(DAYS)
    return ", ".join(names[d] for d in sorted(days) if d in names)
