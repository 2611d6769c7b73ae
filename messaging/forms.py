from django import forms


class FallbackConfigForm(forms.Form):
    enabled = forms.BooleanField(label="Send SMS through Twilio when iMessage is not possible",
                                 required=False)  # fmt: skip
    twilio_account_sid = forms.CharField(label="Twilio Account SID", max_length=64, required=False)
    twilio_auth_token = forms.CharField(
        label="Twilio auth token",
        required=False,
        max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="Stored encrypted and never shown. Leave blank to keep the current one.",
    )
    twilio_from_number = forms.CharField(label="From number", max_length=20, required=False)
    send_fallback_sms_on_failed = forms.BooleanField(
        label="By default, send a fallback SMS when a message fails", required=False
    )

    def service_fields(self) -> dict:
        data = dict(self.cleaned_data)
        if not data["twilio_auth_token"]:
            del data["twilio_auth_token"]
        return data


class WebhookEndpointForm(forms.Form):
    name = forms.CharField(label="Name", max_length=200)
    url = forms.URLField(label="URL", max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(
        label="Events", widget=forms.CheckboxSelectMultiple, choices=()
    )
    description = forms.CharField(label="Description", required=False, max_length=500)

    def __init__(self, *args, events=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["events"].choices = [(e, e) for e in events]


class FrequencyCapForm(forms.Form):
    """The workspace's frequency cap (messaging.frequency.frequency_cap_update)."""

    per_day = forms.IntegerField(
        label="Messages per lead per 24 hours", min_value=0, max_value=1000,
        help_text="0: no daily cap.",
    )  # fmt: skip
    per_week = forms.IntegerField(
        label="Messages per lead per 7 days", min_value=0, max_value=1000,
        help_text="0: no weekly cap.",
    )  # fmt: skip

    SERVICE_FIELDS = {"perDay": "per_day", "perWeek": "per_week"}
