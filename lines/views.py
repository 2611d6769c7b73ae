"""Lines pages: usage against the daily caps, health, add / edit / delete."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from lines import safety, selectors, services, warmup
from lines.charts import activity_chart
from lines.forms import LineForm
from lines.models import Line
from tuco.errors import NotFound, ServiceError
from tuco.forms import add_service_error
from tuco.views import workspace_required

USAGE_BARS = (
    ("New conversations", "new_conversations_count", "daily_new_conversations_limit"),
    ("Messages", "total_messages_count", "daily_total_messages_limit"),
    ("Availability checks", "availability_checks_count", "daily_availability_checks_limit"),
)


def _with_usage(line: Line, policy: warmup.Policy | None = None) -> Line:
    usage = selectors.line_today_usage(line)
    line.warmup = warmup.line_warmup(line, policy=policy)
    line.usage_bars = []
    for label, counter, limit in USAGE_BARS:
        used, cap = getattr(usage, counter), getattr(line, limit)
        if counter == "new_conversations_count" and line.warmup is not None:
            cap = line.warmup.cap_today
        line.usage_bars.append(
            {"label": label, "used": used, "limit": cap, "full": cap == 0 or used >= cap}
        )
    return line


RISK_BADGES = {"low": "badge-success", "medium": "badge-warning", "high": "badge-danger"}


def _with_safety(lines: list[Line]) -> list[Line]:
    """Attach each line's spam risk, figures and 14-day chart (three queries in all)."""
    stats = safety.line_stats_many(lines=lines)
    days = safety.line_activity_days(lines=lines)
    for line in lines:
        line.stats = stats[line.pk]
        line.risk = line.stats.risk
        line.risk_badge = RISK_BADGES[line.risk]
        line.chart = activity_chart(days[line.pk])
    return lines


def _line(request, line_id) -> Line:
    try:
        return selectors.line_get(workspace=request.workspace, line_id=line_id)
    except NotFound:
        raise Http404("Line not found") from None


@require_GET
@workspace_required
def line_list(request):
    policy = warmup.policy_for(request.workspace.pk)
    lines = [_with_usage(line, policy) for line in selectors.line_list(workspace=request.workspace)]
    _with_safety(lines)
    return render(request, "lines/list.html", {"section": "lines", "lines": lines})


@require_POST
@workspace_required
def line_check(request, line_id):
    """Check the line's relay now and answer with its row."""
    line = _line(request, line_id)
    services.line_health_check(line=line)
    line = _with_usage(_line(request, line_id))
    _with_safety([line])
    return render(request, "lines/_row.html", {"line": line})


@require_POST
@workspace_required(manage=True)
def line_override(request, line_id):
    """An owner lifts the automatic safety action on the line."""
    line = _line(request, line_id)
    safety.line_safety_override(workspace=request.workspace, line_id=line.pk)
    messages.success(
        request,
        f"Line {line.display_name}: automatic action lifted; none is taken on risk for 24h.",
    )
    return redirect("lines:index")


@require_POST
@workspace_required(manage=True)
def line_rotate_token(request, line_id):
    """An owner gives the line a new relay callback URL: the old one stops working
    and the relay's registration moves to the new one (as the API's rotation)."""
    line = _line(request, line_id)
    try:
        services.line_webhook_token_rotate(workspace=request.workspace, line_id=line.pk)
    except NotFound:
        raise Http404("Line not found") from None
    notice = f"Line {line.display_name} has a new relay callback URL; the old one no longer works."
    if not request.htmx:
        messages.success(request, notice)
        return redirect("lines:index")
    line = _with_usage(_line(request, line_id))
    _with_safety([line])
    return render(request, "lines/_row.html", {"line": line, "flash": notice})


def _form_page(request, form, line=None):
    status = 400 if form.is_bound and form.errors else 200
    context = {"section": "lines", "form": form, "line": line}
    return render(request, "lines/form.html", context, status=status)


@workspace_required(manage=True)
def line_create(request):
    form = LineForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            line = services.line_create(workspace=request.workspace, **form.service_fields())
        except ServiceError as exc:
            add_service_error(form, exc, LineForm.SERVICE_FIELDS)
        else:
            messages.success(request, f"Line {line.display_name} added.")
            return redirect("lines:index")
    return _form_page(request, form)


@workspace_required(manage=True)
def line_edit(request, line_id):
    line = _line(request, line_id)
    form = LineForm(request.POST or None, line=line)
    if request.method == "POST" and form.is_valid():
        try:
            line = services.line_update(
                workspace=request.workspace, line_id=line.pk, **form.service_fields()
            )
        except ServiceError as exc:
            add_service_error(form, exc, LineForm.SERVICE_FIELDS)
        else:
            messages.success(request, f"Line {line.display_name} saved.")
            return redirect("lines:index")
    return _form_page(request, form, line)


@workspace_required(manage=True)
def line_delete(request, line_id):
    line = _line(request, line_id)
    if request.method == "POST":
        try:
            services.line_delete(workspace=request.workspace, line_id=line.pk)
        except NotFound:
            raise Http404("Line not found") from None
        messages.success(request, f"Line {line.display_name} deleted.")
        return redirect("lines:index")
    return render(request, "lines/delete.html", {"section": "lines", "line": line})


@require_POST
@workspace_required(manage=True)
def line_warmup(request, line_id):
    """Restart (action=restart) or end (action=end) the line's warm-up."""
    line = _line(request, line_id)
    action = request.POST.get("action")
    try:
        if action == "restart":
            services.line_warmup_restart(workspace=request.workspace, line_id=line.pk)
            messages.success(request, f"Warm-up of {line.display_name} restarted from day 1.")
        elif action == "end":
            services.line_warmup_end(workspace=request.workspace, line_id=line.pk)
            messages.success(request, f"Warm-up of {line.display_name} ended.")
        else:
            messages.error(request, "Unknown warm-up action.")
    except NotFound:
        raise Http404("Line not found") from None
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("lines:index")
