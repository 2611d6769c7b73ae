"""The frequency cap's section of the Settings page (registered in MessagingConfig.ready)."""

from dataclasses import asdict

from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from messaging import frequency
from messaging.forms import FrequencyCapForm
from tuco.errors import ServiceError
from tuco.forms import add_service_error
from tuco.settings_sections import SettingsSection
from tuco.views import settings_page_error, workspace_required


def settings_context(request, **forms) -> dict:
    caps = frequency.caps_for(request.workspace.pk)
    return {
        "frequency_caps": caps,
        "frequency_cap_form": forms.get("frequency_cap_form")
        or FrequencyCapForm(initial=asdict(caps)),
    }


SETTINGS_SECTION = SettingsSection(
    template="messaging/_frequency_settings.html", context=settings_context
)


@require_POST
@workspace_required(manage=True)
def frequency_cap(request):
    form = FrequencyCapForm(request.POST)
    if form.is_valid():
        try:
            frequency.frequency_cap_update(workspace=request.workspace, **form.cleaned_data)
        except ServiceError as exc:
            add_service_error(form, exc, FrequencyCapForm.SERVICE_FIELDS)
        else:
            messages.success(request, "Frequency cap saved.")
            return redirect("settings")
    return settings_page_error(request, frequency_cap_form=form)
