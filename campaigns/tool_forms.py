"""The dashboard's API tool form: headers typed one per line ("Name: value")."""

from django import forms

from campaigns import tools
from campaigns.models import ApiTool
from tuco.errors import ServiceError
from tuco.forms import add_service_error

HEADER_HELP = (
    "One per line, e.g. Authorization: Bearer sk_… Stored encrypted and only ever shown "
    "masked; leave a masked value as it is to keep it."
)


class ApiToolForm(forms.Form):
    SERVICE_FIELDS = {
        "name": "name",
        "method": "method",
        "url": "url",
        "body": "body",
        "responseMapping": "response_mapping",
        "headers": "headers",
        "description": "description",
    }

    name = forms.CharField(
        max_length=100, help_text="Becomes the message variable {api_<name>}, e.g. check_status"
    )
    method = forms.ChoiceField(choices=ApiTool.Method.choices)
    url = forms.CharField(
        label="URL",
        max_length=2000,
        help_text="Lead variables work in the path and query: https://api.example.com/check/{phone}",
    )
    headers = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text=HEADER_HELP
    )
    body = forms.CharField(
        label="Body (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
        help_text='Variables go inside strings: {"phone": "{phone}", "name": "{firstName}"}',
    )
    response_mapping = forms.CharField(
        label="Response mapping",
        max_length=500,
        help_text="The dot path of the value to use: data.status, verified, items[0].id",
    )
    description = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )

    @staticmethod
    def initial_for(tool: ApiTool) -> dict:
        headers = "\n".join(f"{k}: {v}" for k, v in tools.masked_headers(tool).items())
        return {
            "name": tool.name,
            "method": tool.method,
            "url": tool.url,
            "headers": headers,
            "body": tool.body,
            "response_mapping": tool.response_mapping,
            "description": tool.description,
        }

    def clean_headers(self) -> dict[str, str]:
        headers = {}
        for number, line in enumerate(self.cleaned_data["headers"].splitlines(), start=1):
            if not line.strip():
                continue
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                raise forms.ValidationError(f"Line {number}: write it as Name: value")
            headers[name.strip()] = value.strip()
        return headers

    def save(self, *, workspace, tool: ApiTool | None) -> ApiTool | None:
        """The saved tool, or None with the service's error on its field."""
        data = self.cleaned_data
        try:
            return tools.tool_save(
                workspace=workspace,
                tool_id=tool.pk if tool else None,
                name=data["name"],
                method=data["method"],
                url=data["url"],
                response_mapping=data["response_mapping"],
                headers=data["headers"],
                body=data["body"],
                description=data["description"],
            )
        except ServiceError as exc:
            field = exc.field.split(".", 1)[0]
            if field != exc.field:
                exc = ServiceError(f"{exc.field.split('.', 1)[1]}: {exc.message}", field=field)
            add_service_error(self, exc, self.SERVICE_FIELDS)
            return None


class ToolTestForm(forms.Form):
    lead = forms.ChoiceField(label="Test with lead", required=False)

    def __init__(self, *args, leads=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["lead"].choices = [("", "No lead (variables empty)")] + [
            (lead.pk, _lead_label(lead)) for lead in leads
        ]


def _lead_label(lead) -> str:
    name = f"{lead.first_name} {lead.last_name}".strip()
    address = lead.phone or lead.email
    return f"{name} · {address}" if name else address
