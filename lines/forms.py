from django import forms

from lines import services, validators

LIMIT = {"min_value": 0, "max_value": 100_000}
GAP = {"min_value": 0, "max_value": 86_400}


class LineHandlesMixin:
    """The server URL, phone and email as the line services store them, with their
    errors on the field."""

    def _normalized(self, name: str, clean) -> str:
        try:
            return clean(self.cleaned_data[name])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_server_url(self) -> str:
        return self._normalized("server_url", validators.clean_server_url)

    def clean_phone(self) -> str:
        return self._normalized("phone", validators.clean_phone)

    def clean_email(self) -> str:
        return self._normalized("email", validators.clean_email)


class LineForm(LineHandlesMixin, forms.Form):
    server_url = forms.CharField(
        label="Server URL",
        max_length=500,
        help_text="The relay on the Mac, e.g. https://mac.example.com:1234",
        widget=forms.TextInput(attrs={"inputmode": "url", "autocomplete": "off"}),
    )
    password = forms.CharField(
        label="Relay password",
        max_length=500,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    phone = forms.CharField(label="Phone (iMessage handle)", max_length=40, required=False)
    email = forms.CharField(label="Email (iMessage handle)", max_length=254, required=False)
    first_name = forms.CharField(label="First name", max_length=100, required=False)
    last_name = forms.CharField(label="Last name", max_length=100, required=False)
    is_active = forms.BooleanField(label="Active", required=False, initial=True)
    daily_new_conversations_limit = forms.IntegerField(
        label="New conversations per day", initial=50, **LIMIT
    )
    daily_total_messages_limit = forms.IntegerField(label="Messages per day", initial=150, **LIMIT)
    daily_availability_checks_limit = forms.IntegerField(
        label="Availability checks per day", initial=70, **LIMIT
    )
    device_gap_seconds = forms.IntegerField(
        label="Gap between sends (s)",
        initial=30,
        help_text="Least time between two messages from this line.",
        **GAP,
    )
    contact_gap_seconds = forms.IntegerField(
        label="Gap per recipient (s)",
        initial=45,
        help_text="Least time between two messages to the same recipient.",
        **GAP,
    )
    check_gap_seconds = forms.IntegerField(label="Gap between checks (s)", initial=3, **GAP)

    # API field name -> form field, for the service's "field: message" errors.
    SERVICE_FIELDS = {
        "serverUrl": "server_url",
        "server_url": "server_url",
        "password": "password",
        "phone": "phone",
        "email": "email",
        "firstName": "first_name",
        "lastName": "last_name",
    }

    def __init__(self, *args, line=None, **kwargs):
        if line is not None:
            kwargs["initial"] = {
                name: getattr(line, name) for name in self.base_fields if name != "password"
            }
        super().__init__(*args, **kwargs)
        self.line = line
        if line is not None:
            self.fields["password"].required = False
            self.fields["password"].help_text = "Leave blank to keep the current password."

    def service_fields(self) -> dict:
        """The cleaned form as line_create / line_update keyword arguments (a blank
        password: unchanged)."""
        data = dict(self.cleaned_data)
        data["relay_password"] = data.pop("password") or None
        return data


class LinePolicyForm(forms.Form):
    """The workspace's line pacing settings (lines.services.line_policy_update)."""

    warmup_start_cap = forms.IntegerField(
        label="Warm-up: new conversations on day 1",
        min_value=0,
        max_value=services.WARMUP_START_CAP_MAX,
    )
    warmup_days = forms.IntegerField(
        label="Warm-up: days to reach the line's own cap",
        min_value=0,
        max_value=services.WARMUP_DAYS_MAX,
        help_text="New lines, and lines back from quarantine, warm up. 0 turns warm-up off.",
    )
    gap_jitter_percent = forms.IntegerField(
        label="Gap jitter (± %)",
        min_value=0,
        max_value=services.GAP_JITTER_PERCENT_MAX,
        help_text="Device and contact gaps vary randomly by up to this much either way.",
    )

    spread_over_window = forms.BooleanField(
        label="Spread campaign sends over their send window",
        required=False,
        help_text="Instead of sending back to back as the window opens.",
    )

    SERVICE_FIELDS = {
        "warmupStartCap": "warmup_start_cap",
        "warmupDays": "warmup_days",
        "gapJitterPercent": "gap_jitter_percent",
    }
