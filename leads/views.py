"""Leads pages: the table with availability checks, and CSV import."""

import json
import math
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db import connection
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from leads import availability, import_tasks, selectors, tags
from leads.forms import BulkTagForm, ImportMappingForm, ImportUploadForm, LeadFilterForm
from leads.models import AvailabilityJob, Lead, LeadList, LeadTag, ListMembership
from tuco.errors import NotFound
from tuco.views import workspace_required


def _lists(workspace) -> list[LeadList]:
    # Names only: a per-list COUNT over every membership would cost more than the page.
    return list(LeadList.objects.filter(workspace=workspace).order_by("name"))


def _matching(workspace, filters: dict):
    """The workspace's leads matching the page's filters, with the selector's search rule."""
    queryset = Lead.objects.filter(workspace=workspace)
    if filters["list_id"]:
        queryset = queryset.filter(
            pk__in=ListMembership.objects.filter(
                lead_list_id=filters["list_id"], lead_list__workspace=workspace
            ).values("lead_id")
        )
    if filters["availability"]:
        queryset = queryset.filter(availability_status=filters["availability"])
    if filters.get("tag"):
        tag = selectors.tag_find(workspace=workspace, name=filters["tag"])
        queryset = (
            queryset.filter(pk__in=LeadTag.objects.filter(tag=tag).values("lead_id"))
            if tag
            else queryset.none()
        )
    if filters["search"]:
        queryset = queryset.filter(selectors._search_filter(filters["search"]))
    return queryset


# Counting every matching row on each page view is what makes a big table slow, so
# the page counts up to COUNT_CAP and beyond that shows the planner's estimate
# ("about 100,000"). Offsets beyond MAX_OFFSET are refused: walking 100,000 rows to
# skip them costs more than the page is worth; filters and search get there faster.
COUNT_CAP = 10_000
MAX_OFFSET = 10_000


@dataclass
class LeadPage:
    items: list
    page: int
    limit: int
    count: int  # exact when not capped
    capped: bool
    estimate: int | None
    has_next: bool
    too_deep: bool = False

    @property
    def total_pages(self) -> int | None:
        return None if self.capped else max(1, math.ceil(self.count / self.limit))

    @property
    def first_index(self) -> int:
        return (self.page - 1) * self.limit + 1 if self.items else 0

    @property
    def last_index(self) -> int:
        return (self.page - 1) * self.limit + len(self.items)


def _estimate(queryset) -> int | None:
    """The Postgres planner's row estimate for the query (no rows are read)."""
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def lead_page(*, workspace, filters: dict) -> LeadPage:
    queryset = _matching(workspace, filters)
    page, limit = filters["page"], filters["limit"]
    offset = (page - 1) * limit
    if offset > MAX_OFFSET:
        count = queryset.order_by()[: COUNT_CAP + 1].count()
        capped = count > COUNT_CAP
        estimate = _estimate(queryset.order_by()) if capped else None
        return LeadPage([], page, limit, count, capped, estimate, False, too_deep=True)
    rows = list(queryset.order_by("-created_at", "-id")[offset : offset + limit + 1])
    has_next = len(rows) > limit
    items = selectors.attach_tags(selectors.attach_list_ids(rows[:limit]))
    if offset == 0 and not has_next:
        # Everything that matches is on this page: no count needed (a search that
        # matches few rows would otherwise scan the table a second time).
        return LeadPage(items, page, limit, len(items), False, None, False)
    count = queryset.order_by()[: COUNT_CAP + 1].count()
    capped = count > COUNT_CAP
    estimate = _estimate(queryset.order_by()) if capped else None
    return LeadPage(items, page, limit, count, capped, estimate, has_next)


def _page_links(filters: dict, page: LeadPage) -> dict:
    base = {
        k: v
        for k, v in (
            ("search", filters["search"]),
            ("list", filters["list_id"] or ""),
            ("availability", filters["availability"] or ""),
            ("tag", filters.get("tag") or ""),
            ("limit", filters["limit"]),
        )
        if v
    }

    def url(number):
        return "?" + urlencode({**base, "page": number})

    return {
        "previous": url(page.page - 1) if page.page > 1 else None,
        "next": url(page.page + 1) if page.has_next else None,
    }


@require_GET
@workspace_required
def lead_list(request):
    workspace = request.workspace
    lists = _lists(workspace)
    tag_rows = selectors.tag_list(workspace=workspace)
    form = LeadFilterForm(request.GET or None, lists=lists, tags=tag_rows)
    filters = form.filters()
    if filters["list_id"] and filters["list_id"] not in {x.pk for x in lists}:
        filters["list_id"] = None
    page = lead_page(workspace=workspace, filters=filters)
    list_names = {x.pk: x.name for x in lists}
    for lead in page.items:
        lead.list_names = [list_names[i] for i in lead.list_ids if i in list_names]
    running_job = (
        AvailabilityJob.objects.filter(workspace=workspace, source="manual")
        .exclude(status__in=AvailabilityJob.FINAL)
        .order_by("-created_at")
        .first()
    )
    context = {
        "section": "leads",
        "form": form,
        "filters": filters,
        "page": page,
        "links": _page_links(filters, page),
        "has_active_line": availability.workspace_has_active_line(workspace=workspace),
        "tag_form": BulkTagForm(),
        "job": running_job,
    }
    return render(request, "leads/list.html", context)


def _row_response(request, lead: Lead, error: str = ""):
    lead.list_names = list(
        LeadList.objects.filter(memberships__lead=lead)
        .order_by("name")
        .values_list("name", flat=True)
    )
    selectors.attach_tags([lead])
    return render(request, "leads/_row.html", {"lead": lead, "row_error": error})


@require_POST
@workspace_required
def lead_check(request, lead_id):
    """Check one lead now and answer with its row."""
    try:
        lead = selectors.lead_get(workspace=request.workspace, lead_id=lead_id)
    except NotFound:
        raise Http404("Lead not found") from None
    error = ""
    try:
        availability.availability_check_lead(workspace=request.workspace, lead=lead)
    except availability.NoActiveLine:
        error = "No active line: add one in Lines to check availability."
    except availability.AvailabilityQuotaExhausted:
        error = "Today's availability checks are used up on every line. Try again tomorrow."
    except availability.LinesBusy as exc:
        error = f"Every line is busy. Try again in {max(1, round(exc.retry_after))} s."
    lead.refresh_from_db()
    return _row_response(request, lead, error)


def _selected_lead_ids(request) -> list[str]:
    workspace = request.workspace
    if request.POST.get("all_matching"):
        lists = _lists(workspace)
        tag_rows = selectors.tag_list(workspace=workspace)
        filters = LeadFilterForm(request.POST, lists=lists, tags=tag_rows).filters()
        if filters["list_id"] and filters["list_id"] not in {x.pk for x in lists}:
            return []
        queryset = _matching(workspace, filters)
        return list(queryset.order_by("-created_at", "-id").values_list("pk", flat=True))
    ids = request.POST.getlist("lead")
    found = set(Lead.objects.filter(workspace=workspace, pk__in=ids).values_list("pk", flat=True))
    return [i for i in dict.fromkeys(ids) if i in found]


@require_POST
@workspace_required
def lead_bulk_check(request):
    """Start a background check of the selected leads and answer with its progress."""
    workspace = request.workspace
    lead_ids = _selected_lead_ids(request)
    if not lead_ids:
        return render(
            request,
            "leads/_job.html",
            {"message": "Select at least one lead first."},
        )
    try:
        # Without an active line this marks the leads no_active_line and raises.
        job = availability.availability_job_create(workspace=workspace, lead_ids=lead_ids)
    except availability.NoActiveLine:
        context = {"no_active_line": True}
    else:
        job.refresh_from_db()
        context = {"job": job}
    response = render(request, "leads/_job.html", context)
    response["HX-Trigger"] = "leads-changed"
    return response


@require_POST
@workspace_required
def lead_bulk_tag(request):
    """Add a tag to the selected leads (or every matching lead) and say how many."""
    form = BulkTagForm(request.POST)
    lead_ids = _selected_lead_ids(request)
    if not lead_ids:
        message = "Select at least one lead first."
    elif not form.is_valid():
        message = form.errors["tag_name"][0]
    else:
        name = form.cleaned_data["tag_name"]
        added = tags.lead_tags_add(
            workspace=request.workspace, pairs=[(i, [name]) for i in lead_ids], source="dashboard"
        )
        message = f"Tag “{name}” added to {added:,} lead{'s' if added != 1 else ''}."
        if added < len(lead_ids):
            message += f" {len(lead_ids) - added:,} already had it."
    response = render(request, "leads/_job.html", {"message": message})
    response["HX-Trigger"] = "leads-changed"
    return response


@require_GET
@workspace_required
def availability_job(request, job_id):
    job = AvailabilityJob.objects.filter(workspace=request.workspace, pk=job_id).first()
    if job is None:
        raise Http404("Job not found")
    response = render(request, "leads/_job.html", {"job": job})
    if job.status in AvailabilityJob.FINAL:
        response["HX-Trigger"] = "leads-changed"
    return response


# Import


@workspace_required
def import_upload(request):
    workspace = request.workspace
    lists = _lists(workspace)
    form = ImportUploadForm(request.POST or None, request.FILES or None, lists=lists)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = import_tasks.import_job_create(
                workspace=workspace,
                user=request.user,
                upload=data["file"],
                lead_list=data["lead_list"],
                new_list_name=data["new_list"],
                default_country_code=data["default_country_code"],
            )
        except import_tasks.ImportRejected as exc:
            form.add_error("file", str(exc))
        else:
            return redirect("leads:import_map", job_id=job.id)
    status = 400 if form.is_bound and form.errors else 200
    return render(
        request, "leads/import_upload.html", {"section": "import", "form": form}, status=status
    )


def _import_job(request, job_id):
    job = import_tasks.import_job_get(workspace=request.workspace, job_id=job_id)
    if job is None:
        raise Http404("Import not found")
    return job


@workspace_required
def import_map(request, job_id):
    job = _import_job(request, job_id)
    if job.status != "uploaded":
        return redirect("leads:import_progress", job_id=job.id)
    form = ImportMappingForm(request.POST or None, headers=job.state["headers"])
    if request.method == "POST" and form.is_valid():
        try:
            import_tasks.import_job_start(job=job, mapping=form.cleaned_data["mapping"])
        except import_tasks.ImportRejected as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("leads:import_progress", job_id=job.id)
    columns = list(zip(job.state["headers"], form.column_fields(), strict=True))
    context = {"section": "import", "job": job, "form": form, "columns": columns}
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "leads/import_map.html", context, status=status)


@require_GET
@workspace_required
def import_progress(request, job_id):
    job = _import_job(request, job_id)
    if job.status == "uploaded":
        return redirect("leads:import_map", job_id=job.id)
    template = "leads/_import_progress.html" if request.htmx else "leads/import_progress.html"
    return render(request, template, {"section": "import", "job": job})
