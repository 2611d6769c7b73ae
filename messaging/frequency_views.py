"""The frequency cap's section of the Settings page (registered in MessagingConfig.ready)."""

from dataclasses import asdict

from django.views.decorators.http import require_POST

from messaging import frequency
from messaging.forms import FrequencyCapForm
from tuco.settings_sections import SettingsSection
from tuco.views import settings_form_save, workspace_required


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
    return settings_form_save(
        request,
        FrequencyCapForm,
        frequency.frequency_cap_update,
        saved="Frequency cap saved.",
        form_name="frequency_cap_form",
    )
