import re
import zoneinfo

from django import forms

from campaigns.models import Campaign, Step
from campaigns.services import CampaignSettings
from campaigns.steps import MAX_DELAY, MAX_STEPS, StepSpec
from tuco.errors import ServiceError
from tuco.forms import add_service_error

# Sunday first, as the API numbers them (0 = Sunday … 6 = Saturday).
DAYS = [(0, "Sun"), (1, "Mon"), (2, "Tue"), (3, "Wed"), (4, "Thu"), (5, "Fri"), (6, "Sat")]
CHANNELS = [("imessage", "iMessage"), ("sms", "SMS"), ("email", "Email")]
PLACEHOLDER_HELP = (
    "Placeholders: {firstName}, {lastName}, {companyName}; "
    "a default after a bar: {firstName|there}."
)


def _timezone_choices():
    return [("", "Workspace time zone")] + [
        (name, name) for name in sorted(zoneinfo.available_timezones())
    ]


class CampaignForm(forms.Form):
    name = forms.CharField(label="Name", max_length=200)
    lead_list = forms.ChoiceField(
        label="Lead list",
        required=False,
        help_text="Everyone on the list is enrolled when the campaign starts.",
    )
    lines = forms.MultipleChoiceField(
        label="Lines",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every line of the workspace.",
    )
    timezone = forms.ChoiceField(label="Time zone", required=False, choices=_timezone_choices)
    send_window_start = forms.TimeField(
        label="Send from",
        required=False,
        input_formats=["%H:%M"],
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    send_window_end = forms.TimeField(
        label="Send until",
        required=False,
        input_formats=["%H:%M"],
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text="Blank: any time of day.",
    )
    allowed_days = forms.TypedMultipleChoiceField(
        label="Days",
        required=False,
        coerce=int,
        choices=DAYS,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every day.",
    )
    reply_behavior = forms.ChoiceField(
        label="When a lead replies",
        choices=Campaign.ReplyBehavior.choices,
        initial=Campaign.ReplyBehavior.STOP,
        widget=forms.RadioSelect,
    )
    send_immediately = forms.BooleanField(
        label="Send the first step as soon as a lead is enrolled",
        required=False,
        initial=True,
        help_text="Otherwise step 1 waits for its own delay.",
    )
    randomize_order = forms.BooleanField(label="Randomize the order of leads", required=False)

    SERVICE_FIELDS = {
        "name": "name",
        "settings.timezone": "timezone",
        "settings.sendWindowStart": "send_window_start",
        "settings.sendWindowEnd": "send_window_end",
        "settings.allowedDaysOfWeek": "allowed_days",
        "settings.replyBehavior": "reply_behavior",
        "lineIds": "lines",
    }

    def __init__(self, *args, lists=(), lines=(), campaign: Campaign | None = None, **kwargs):
        if campaign is not None:
            kwargs["initial"] = {
                "name": campaign.name,
                "lead_list": campaign.lead_list_id or "",
                "lines": [line.pk for line in campaign.lines.all()],
                "timezone": campaign.timezone,
                "send_window_start": campaign.send_window_start,
                "send_window_end": campaign.send_window_end,
                "allowed_days": list(campaign.allowed_days),
                "reply_behavior": campaign.reply_behavior,
                "send_immediately": campaign.send_immediately,
                "randomize_order": campaign.randomize_order,
            }
        super().__init__(*args, **kwargs)
        self.fields["lead_list"].choices = [("", "No list (enroll leads through the API)")] + [
            (x.pk, x.name) for x in lists
        ]
        self.fields["lines"].choices = [(line.pk, _line_label(line)) for line in lines]

    def clean(self):
        data = super().clean()
        start, end = data.get("send_window_start"), data.get("send_window_end")
        if bool(start) != bool(end):
            self.add_error(
                "send_window_end" if start else "send_window_start",
                "Give both ends of the send window, or neither.",
            )
        return data

    def service_arguments(self) -> dict:
        """name, list_id, line_ids and settings as campaign_create / campaign_update
        take them."""
        data = self.cleaned_data
        hhmm = lambda t: t.strftime("%H:%M") if t else ""  # noqa: E731
        return {
            "name": data["name"],
            "list_id": data["lead_list"] or None,
            "line_ids": list(data["lines"]),
            "settings": CampaignSettings(
                send_immediately=data["send_immediately"],
                randomize_order=data["randomize_order"],
                timezone=data["timezone"],
                send_window_start=hhmm(data["send_window_start"]),
                send_window_end=hhmm(data["send_window_end"]),
                allowed_days=sorted(set(data["allowed_days"])),
                reply_behavior=data["reply_behavior"],
            ),
        }


def _line_label(line) -> str:
    handle = line.phone or line.email
    name = line.display_name
    label = f"{name} ({handle})" if handle and handle != name else name
    if not line.is_active:
        label += " — inactive"
    elif line.health_status == "down":
        label += " — down"
    return label


class StepForm(forms.Form):
    delay = forms.IntegerField(label="Wait", min_value=0, initial=0)
    delay_unit = forms.ChoiceField(
        label="Unit", choices=Step.DelayUnit.choices, initial=Step.DelayUnit.DAYS
    )
    message_type = forms.ChoiceField(label="Channel", choices=CHANNELS, initial="imessage")
    message = forms.CharField(
        label="Message",
        max_length=5000,
        strip=False,
        help_text=PLACEHOLDER_HELP,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    sms_fallback_message = forms.CharField(
        label="SMS fallback text",
        required=False,
        max_length=1600,
        help_text="Sent by SMS instead when the lead is not on iMessage.",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def clean_message(self):
        value = self.cleaned_data["message"]
        if not value.strip():
            raise forms.ValidationError("A step needs a message.")
        return value

    def clean(self):
        data = super().clean()
        delay, unit = data.get("delay"), data.get("delay_unit")
        if delay is not None and unit in MAX_DELAY and delay > MAX_DELAY[unit]:
            self.add_error("delay", f"At most {MAX_DELAY[unit]} {unit}")
        return data

    def as_step(self) -> StepSpec:
        data = self.cleaned_data
        return StepSpec(
            message=data["message"],
            delay=data["delay"],
            delay_unit=data["delay_unit"],
            message_type=data["message_type"],
            sms_fallback_message=data["sms_fallback_message"],
        )


class BaseStepFormSet(forms.BaseFormSet):
    def get_form_kwargs(self, index):
        # Every step shown is a step: an untouched one is an error, not skipped.
        return {**super().get_form_kwargs(index), "empty_permitted": False}

    def clean(self):
        if any(self.errors):
            return
        if not self.forms:
            raise forms.ValidationError("Add at least one step.")

    def steps(self) -> list[StepSpec]:
        return [form.as_step() for form in self.forms]


StepFormSet = forms.formset_factory(
    StepForm, formset=BaseStepFormSet, extra=0, max_num=MAX_STEPS, validate_max=True
)
STEP_FIELDS = list(StepForm.base_fields)
STEPS_PREFIX = "steps"
_STEP_ERROR = re.compile(r"^steps\[(\d+)\]\.(\w+)$")
_STEP_FIELD = {
    "message": "message",
    "delay": "delay",
    "delayUnit": "delay_unit",
    "messageType": "message_type",
    "smsFallbackMessage": "sms_fallback_message",
}


def step_initial(step: Step) -> dict:
    return {
        "delay": step.delay,
        "delay_unit": step.delay_unit,
        "message_type": step.message_type,
        "message": step.message,
        "sms_fallback_message": step.sms_fallback_message,
    }


def new_step(first: bool = False) -> dict:
    return {
        "delay": 0 if first else 1,
        "delay_unit": "days",
        "message_type": "imessage",
        "message": "",
        "sms_fallback_message": "",
    }


def posted_steps(data) -> list[dict]:
    """The steps as typed, straight from the POST (for re-showing them after an edit
    of the list itself: add, remove, move)."""
    try:
        total = int(data.get(f"{STEPS_PREFIX}-TOTAL_FORMS", 0))
    except ValueError:
        total = 0
    total = max(0, min(total, MAX_STEPS))
    return [
        {name: data.get(f"{STEPS_PREFIX}-{i}-{name}", "") for name in STEP_FIELDS}
        for i in range(total)
    ]


def apply_step_op(steps: list[dict], op: str) -> list[dict]:
    """add | remove:i | up:i | down:i on the typed steps."""
    steps = list(steps)
    action, _, index = op.partition(":")
    if action == "add":
        if len(steps) < MAX_STEPS:
            steps.append(new_step(first=not steps))
        return steps
    try:
        i = int(index)
    except ValueError:
        return steps
    if not 0 <= i < len(steps):
        return steps
    if action == "remove" and len(steps) > 1:
        del steps[i]
    elif action == "up" and i > 0:
        steps[i - 1], steps[i] = steps[i], steps[i - 1]
    elif action == "down" and i < len(steps) - 1:
        steps[i + 1], steps[i] = steps[i], steps[i + 1]
    return steps


def step_formset(data=None, initial=None) -> BaseStepFormSet:
    if data is not None:
        return StepFormSet(data, prefix=STEPS_PREFIX)
    return StepFormSet(initial=initial, prefix=STEPS_PREFIX)


def add_campaign_error(form: CampaignForm, steps: BaseStepFormSet | None, exc: ServiceError):
    """Put a service error on the field (or step field) it names."""
    match = _STEP_ERROR.match(exc.field)
    if match and steps is not None:
        index, name = int(match.group(1)), _STEP_FIELD.get(match.group(2))
        if index < len(steps.forms) and name:
            steps.forms[index].add_error(name, exc.message)
            return
    add_service_error(form, exc, CampaignForm.SERVICE_FIELDS)
