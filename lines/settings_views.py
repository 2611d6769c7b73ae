"""Lines' section of the Settings page: the workspace's warm-up curve and gap jitter.

Registered with the page in LinesConfig.ready(); a form with errors renders the
whole Settings page again, with that form."""

from dataclasses import asdict

from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from lines import services, warmup
from lines.forms import LinePolicyForm
from tuco.errors import ServiceError
from tuco.forms import add_service_error
from tuco.settings_sections import SettingsSection
from tuco.views import settings_page_error, workspace_required


def settings_context(request, **forms) -> dict:
    policy = warmup.policy_for(request.workspace.pk)
    return {
        "line_policy": policy,
        "line_policy_form": forms.get("line_policy_form") or LinePolicyForm(initial=asdict(policy)),
    }


SETTINGS_SECTION = SettingsSection(template="lines/_settings.html", context=settings_context)


@require_POST
@workspace_required(manage=True)
def line_policy(request):
    form = LinePolicyForm(request.POST)
    if form.is_valid():
        try:
            services.line_policy_update(workspace=request.workspace, **form.cleaned_data)
        except ServiceError as exc:
            add_service_error(form, exc, LinePolicyForm.SERVICE_FIELDS)
        else:
            messages.success(request, "Line pacing settings saved.")
            return redirect("settings")
    return settings_page_error(request, line_policy_form=form)
