"""Dashboard pages for the workspace's API tools: list, create / edit, delete, and a
Test button that calls a tool for a chosen lead and shows the mapped value."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from campaigns import selectors, tools
from campaigns.models import ApiTool
from campaigns.tool_forms import ApiToolForm, ToolTestForm
from leads.models import Lead
from tuco.errors import NotFound
from tuco.views import workspace_required

# The lead picker offers the most recent leads.
PICKER_LEADS = 100


def _tool(request, tool_id) -> ApiTool:
    try:
        return tools.tool_get(workspace=request.workspace, tool_id=tool_id)
    except NotFound:
        raise Http404("Tool not found") from None


@require_GET
@workspace_required
def tool_list(request):
    items = list(selectors.api_tool_list(workspace=request.workspace))
    return render(request, "campaigns/tools.html", {"section": "tools", "tools": items})


@require_http_methods(["GET", "POST"])
@workspace_required
def tool_create(request):
    return _edit_page(request, None)


@require_http_methods(["GET", "POST"])
@workspace_required
def tool_edit(request, tool_id):
    return _edit_page(request, _tool(request, tool_id))


def _edit_page(request, tool: ApiTool | None):
    status = 200
    if request.method == "POST":
        form = ApiToolForm(request.POST)
        if form.is_valid():
            saved = form.save(workspace=request.workspace, tool=tool)
            if saved is not None:
                messages.success(request, f"Tool “{saved.name}” saved as {{{saved.variable}}}.")
                return redirect("campaigns:tool_edit", tool_id=saved.pk)
        status = 400
    else:
        form = ApiToolForm(initial=ApiToolForm.initial_for(tool) if tool else None)
    leads = Lead.objects.filter(workspace=request.workspace).order_by("-created_at", "-id")
    context = {
        "section": "tools",
        "tool": tool,
        "form": form,
        "test_form": ToolTestForm(leads=leads[:PICKER_LEADS]),
    }
    return render(request, "campaigns/tool_form.html", context, status=status)


@require_POST
@workspace_required
def tool_delete(request, tool_id):
    tool = _tool(request, tool_id)
    tools.tool_delete(workspace=request.workspace, tool_id=tool.pk)
    messages.success(request, f"Tool “{tool.name}” deleted.")
    return redirect("campaigns:tools")


@require_POST
@workspace_required
def tool_test(request, tool_id):
    """Call the tool for the chosen lead now and answer with the result panel."""
    tool = _tool(request, tool_id)
    lead_id = request.POST.get("lead") or None
    try:
        result = tools.tool_test(workspace=request.workspace, tool_id=tool.pk, lead_id=lead_id)
    except NotFound as exc:
        result = {"success": False, "error": exc.message, "request": None}
    return render(request, "campaigns/_tool_result.html", {"tool": tool, "result": result})
