import re
import zoneinfo

from django import forms

from campaigns.models import Campaign, Step
from campaigns.services import CampaignSettings
from campaigns.steps import MAX_DELAY, MAX_STEPS, BranchSpec, StepSpec
from tuco.api.validation import validated
from tuco.errors import ServiceError, ValidationFailed
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
    kind = forms.ChoiceField(
        label="Kind", choices=Step.Kind.choices, initial="message", required=False
    )
    delay = forms.IntegerField(label="Wait", min_value=0, initial=0)
    delay_unit = forms.ChoiceField(
        label="Unit", choices=Step.DelayUnit.choices, initial=Step.DelayUnit.DAYS
    )
    message_type = forms.ChoiceField(label="Channel", choices=CHANNELS, initial="imessage")
    message = forms.CharField(
        label="Message",
        required=False,
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
        if self.data.get(self.add_prefix("kind"), "message") != "branch" and not value.strip():
            raise forms.ValidationError("A step needs a message.")
        return value

    def clean(self):
        data = super().clean()
        delay, unit = data.get("delay"), data.get("delay_unit")
        if delay is not None and unit in MAX_DELAY and delay > MAX_DELAY[unit]:
            self.add_error("delay", f"At most {MAX_DELAY[unit]} {unit}")
        return data

    def as_step(self, nested: dict | None = None) -> StepSpec:
        """The step, with its stop conditions and branch paths (already checked, see
        nested_parts) from `nested`."""
        data = self.cleaned_data
        kind = data["kind"] or "message"
        rules, branches = nested or ((), ())
        return StepSpec(
            message=data["message"] if kind == "message" else "",
            delay=data["delay"],
            delay_unit=data["delay_unit"],
            message_type=data["message_type"],
            sms_fallback_message=data["sms_fallback_message"],
            kind=kind,
            stop_rules=rules if kind == "message" else (),
            branches=branches if kind == "branch" else (),
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

    def steps(self, nested: list | None = None) -> list[StepSpec]:
        nested = nested or []
        return [
            form.as_step(nested[i] if i < len(nested) else None)
            for i, form in enumerate(self.forms)
        ]


StepFormSet = forms.formset_factory(
    StepForm, formset=BaseStepFormSet, extra=0, max_num=MAX_STEPS, validate_max=True
)
STEP_FIELDS = list(StepForm.base_fields)
RULE_FIELDS = ("type", "tag", "keyword", "toolId", "operator", "value", "hours")
PATH_STEP_FIELDS = ("message", "delay", "delay_unit", "message_type", "sms_fallback_message")
MAX_NESTED = 20
STEPS_PREFIX = "steps"
_STEP_ERROR = re.compile(r"^steps\[(\d+)\]\.(\w+)$")
_STEP_FIELD = {
    "message": "message",
    "delay": "delay",
    "delayUnit": "delay_unit",
    "messageType": "message_type",
    "smsFallbackMessage": "sms_fallback_message",
    "type": "kind",
}


def step_initial(step: Step) -> dict:
    paths: dict[int, list] = {}
    for sub in step.path_steps.order_by("position") if step.is_branch else ():
        paths.setdefault(sub.path, []).append(
            {
                "message": sub.message,
                "delay": sub.delay,
                "delay_unit": sub.delay_unit,
                "message_type": sub.message_type,
                "sms_fallback_message": sub.sms_fallback_message,
            }
        )
    return {
        "kind": step.kind,
        "rules": [_rule_initial(rule) for rule in step.stop_rules],
        "paths": [
            {**_rule_initial(condition), "steps": paths.get(j, [])}
            for j, condition in enumerate(step.branch_conditions)
        ],
        "delay": step.delay,
        "delay_unit": step.delay_unit,
        "message_type": step.message_type,
        "message": step.message,
        "sms_fallback_message": step.sms_fallback_message,
    }


def _rule_initial(rule: dict) -> dict:
    return {name: "" if rule.get(name) is None else str(rule.get(name, "")) for name in RULE_FIELDS}


def new_step(first: bool = False) -> dict:
    return {
        "kind": "message",
        "rules": [],
        "paths": [],
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
    steps = []
    for i in range(total):
        prefix = f"{STEPS_PREFIX}-{i}"
        step = {name: data.get(f"{prefix}-{name}", "") for name in STEP_FIELDS}
        step["rules"] = [
            _posted_rule(data, f"{prefix}-rule-{j}") for j in range(_count(data, f"{prefix}-rules"))
        ]
        step["paths"] = []
        for j in range(_count(data, f"{prefix}-paths")):
            path = _posted_rule(data, f"{prefix}-path-{j}")
            path["steps"] = [
                {
                    name: data.get(f"{prefix}-path-{j}-step-{k}-{name}", "")
                    for name in PATH_STEP_FIELDS
                }
                for k in range(_count(data, f"{prefix}-path-{j}-steps"))
            ]
            step["paths"].append(path)
        steps.append(step)
    return steps


def _count(data, name: str) -> int:
    try:
        return max(0, min(int(data.get(name, 0)), MAX_NESTED))
    except ValueError:
        return 0


def _posted_rule(data, prefix: str) -> dict:
    return {name: data.get(f"{prefix}-{name}", "").strip() for name in RULE_FIELDS}


def nested_parts(steps: list[dict]) -> list[tuple]:
    """Each typed step's (stop rules, branch paths) as the services take them, checked
    by the API's own input rules; ValidationFailed names the field as the API does."""
    from campaigns.api.conditions import BranchConditionInput, RuleInput
    from campaigns.api.views import PathStepInput

    def checked(serializer, data, field):
        try:
            return validated(serializer, data)
        except ValidationFailed as exc:
            raise ValidationFailed(exc.message, field=f"{field}.{exc.field}") from None

    parts = []
    for i, step in enumerate(steps):
        rules = tuple(
            checked(RuleInput, _rule_data(rule), f"steps[{i}].stopRules[{j}]")
            for j, rule in enumerate(step.get("rules", []))
        )
        branches = []
        for j, path in enumerate(step.get("paths", [])):
            where = f"steps[{i}].branches[{j}]"
            condition = checked(BranchConditionInput, _rule_data(path), where)
            subs = tuple(
                checked(PathStepInput, _path_step_data(sub), f"{where}.steps[{k}]")
                for k, sub in enumerate(path.get("steps", []))
            )
            branches.append(BranchSpec(condition=condition, steps=subs))
        parts.append((rules, tuple(branches)))
    return parts


def _rule_data(rule: dict) -> dict:
    return {name: value for name, value in rule.items() if name in RULE_FIELDS and value != ""}


def _path_step_data(step: dict) -> dict:
    return {
        "message": step.get("message", ""),
        "delay": step.get("delay") or 0,
        "delayUnit": step.get("delay_unit") or "days",
        "messageType": step.get("message_type") or "imessage",
        "smsFallbackMessage": step.get("sms_fallback_message", ""),
    }


def apply_step_op(steps: list[dict], op: str) -> list[dict]:
    """add | remove:i | up:i | down:i on the typed steps; addrule:i, removerule:i:j,
    addpath:i, removepath:i:j, addpathstep:i:j, removepathstep:i:j:k on their
    stop conditions and branch paths; refresh (a step's kind changed)."""
    steps = list(steps)
    action, _, index = op.partition(":")
    if action == "add":
        if len(steps) < MAX_STEPS:
            steps.append(new_step(first=not steps))
        return steps
    try:
        i, *rest = [int(part) for part in index.split(":")]
    except ValueError:
        return steps
    if action in NESTED_OPS and 0 <= i < len(steps):
        NESTED_OPS[action](steps[i], rest)
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


def add_campaign_error(
    form: CampaignForm, steps: BaseStepFormSet | None, exc: ServiceError, typed=None
):
    """Put a service error on the field (or step field, or the stop condition or
    branch path in `typed`, the steps as typed) it names."""
    match = _STEP_ERROR.match(exc.field)
    if match and steps is not None:
        index, name = int(match.group(1)), _STEP_FIELD.get(match.group(2))
        if index < len(steps.forms) and name:
            steps.forms[index].add_error(name, exc.message)
            return
    if typed is not None and attach_nested_error(typed, exc.field, exc.message):
        return
    add_service_error(form, exc, CampaignForm.SERVICE_FIELDS)


def _add_rule(step: dict, rest: list[int]) -> None:
    if len(step["rules"]) < MAX_NESTED:
        step["rules"].append(dict.fromkeys(RULE_FIELDS, "") | {"type": "replied"})


def _add_path(step: dict, rest: list[int]) -> None:
    if len(step["paths"]) < MAX_NESTED:
        step["paths"].append(dict.fromkeys(RULE_FIELDS, "") | {"type": "replied", "steps": []})


def _add_path_step(step: dict, rest: list[int]) -> None:
    if rest and 0 <= rest[0] < len(step["paths"]):
        path = step["paths"][rest[0]]
        if len(path["steps"]) < MAX_STEPS:
            path["steps"].append(
                {"message": "", "delay": 1, "delay_unit": "days", "message_type": "imessage",
                 "sms_fallback_message": ""}
            )  # fmt: skip


def _remove(key: str):
    def remove(step: dict, rest: list[int]) -> None:
        if rest and 0 <= rest[0] < len(step[key]):
            del step[key][rest[0]]

    return remove


def _remove_path_step(step: dict, rest: list[int]) -> None:
    if len(rest) == 2 and 0 <= rest[0] < len(step["paths"]):
        subs = step["paths"][rest[0]]["steps"]
        if 0 <= rest[1] < len(subs):
            del subs[rest[1]]


NESTED_OPS = {
    "addrule": _add_rule,
    "removerule": _remove("rules"),
    "addpath": _add_path,
    "removepath": _remove("paths"),
    "addpathstep": _add_path_step,
    "removepathstep": _remove_path_step,
    "refresh": lambda step, rest: None,
}


_NESTED_ERROR = re.compile(r"(\w+)\[(\d+)\]")


def attach_nested_error(steps: list[dict], field: str, message: str) -> bool:
    """Put an error about a nested field (a stop condition, a path, a path's step) on
    the typed dict it is about; False when `field` names none."""
    path = field.replace("]", "").replace("[", ".").split(".")
    if len(path) < 3 or path[0] != "steps" or not path[1].isdigit():
        return False
    node, parts = None, path
    try:
        node = steps[int(parts[1])]
        parts = parts[2:]
        keys = {"stopRules": "rules", "branches": "paths", "steps": "steps"}
        while len(parts) >= 2 and parts[0] in keys and parts[1].isdigit():
            node = node[keys[parts[0]]][int(parts[1])]
            parts = parts[2:]
    except (IndexError, KeyError):
        return False
    name = {"stopRules": "rules", "branches": "paths"}.get(parts[0], parts[0]) if parts else ""
    node.setdefault("errors", {})[name or "type"] = message
    return True
