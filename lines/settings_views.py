"""Lines' section of the Settings page: the workspace's warm-up curve and gap jitter.

Registered with the page in LinesConfig.ready(); a form with errors renders the
whole Settings page again, with that form."""

from dataclasses import asdict

from django.views.decorators.http import require_POST

from lines import services, warmup
from lines.forms import LinePolicyForm
from tuco.settings_sections import SettingsSection
from tuco.views import settings_form_save, workspace_required


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
    return settings_form_save(
        request,
        LinePolicyForm,
        services.line_policy_update,
        saved="Line pacing settings saved.",
        form_name="line_policy_form",
    )
