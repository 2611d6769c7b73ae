"""Placeholders in message text, filled from the lead at send time: the one renderer
for message bodies, campaign steps and API tool requests.

`{{firstName}}` and `{firstName}` both work, with optional spaces inside the
braces, and a default after a pipe: `{firstName|there}`. Known names:
firstName, lastName, companyName, email, phone, jobTitle, line_name (the sending
line's display name), `custom.<key>` for a key of the lead's customFields (the
bare key works too, for texts written before the prefix existed), and
`api_<tool>` for a workspace API tool's answer. A placeholder whose value is
empty or unknown is replaced by its default, or by nothing when it has none, so
a recipient never sees raw braces for a name we do not have. Text in braces that
is not a placeholder shape (spaces in the name, nested braces, JSON) is left
untouched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# {{ name | default }} or { name | default }; the name is an identifier-like word.
_PLACEHOLDER = re.compile(
    r"\{\{\s*(?P<n2>[A-Za-z_][\w.-]*)\s*(?:\|(?P<d2>[^{}]*))?\}\}"
    r"|\{\s*(?P<n1>[A-Za-z_][\w.-]*)\s*(?:\|(?P<d1>[^{}]*))?\}"
)

LEAD_FIELDS = {
    "firstName": "first_name",
    "lastName": "last_name",
    "companyName": "company_name",
    "email": "email",
    "phone": "phone",
    "jobTitle": "job_title",
}
LINE_FIELDS = ("line_name", "lineName")
CUSTOM_PREFIX = "custom."
API_PREFIX = "api_"


@dataclass(frozen=True)
class ApiValue:
    """An API tool's answer for one send: its text, or None to use the fallback.
    `retry_after` > 0: the tool was not called (its rate limit); ask again then."""

    text: str | None
    retry_after: int = 0


def _text(value) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def context_for(
    *, lead=None, line=None, recipient_name: str = "", api_values: dict | None = None
) -> dict[str, str]:
    """The placeholder values for one send. `api_values`: {tool variable name
    (without `api_`): text or None}."""
    values: dict[str, str] = {}
    if lead is not None:
        for key, value in (lead.custom_fields or {}).items():
            text = _text(value) if isinstance(key, str) else None
            if text is not None:
                values[key] = text
                values[CUSTOM_PREFIX + key] = text
        for name, attribute in LEAD_FIELDS.items():
            values[name] = getattr(lead, attribute, "") or ""
    if recipient_name and not values.get("firstName"):
        first, _, last = recipient_name.strip().partition(" ")
        values["firstName"] = first
        if not values.get("lastName"):
            values["lastName"] = last.strip()
    if line is not None:
        values["line_name"] = line.display_name if line.first_name or line.last_name else ""
        values["lineName"] = values["line_name"]
    for name, text in (api_values or {}).items():
        values[API_PREFIX + name] = text or ""
    return values


def _name_and_default(match: re.Match) -> tuple[str, str | None]:
    if match.group("n2"):
        return match.group("n2"), match.group("d2")
    return match.group("n1"), match.group("d1")


def render(text: str, values: dict[str, str], *, escape: Callable[[str], str] | None = None) -> str:
    """`text` with its placeholders filled from `values`. `escape` is applied to what
    is put in (a value or a default): URL-quoting for a URL, JSON string escaping
    for a JSON body."""

    def replace(match: re.Match) -> str:
        name, default = _name_and_default(match)
        value = str(values.get(name, "") or "").strip() or (default or "").strip()
        return escape(value) if escape and value else value

    return _PLACEHOLDER.sub(replace, text or "")


def placeholder_names(text: str) -> list[str]:
    """The names of the placeholders in `text`, in order, each once."""
    names = (_name_and_default(m)[0] for m in _PLACEHOLDER.finditer(text or ""))
    return list(dict.fromkeys(names))


def api_names(text: str) -> list[str]:
    """The API tools `text` uses, by variable name without `api_`."""
    return [n[len(API_PREFIX) :] for n in placeholder_names(text) if n.startswith(API_PREFIX)]


def unknown_placeholders(
    text: str, *, tool_names=(), line: bool = True, tools: bool = True
) -> list[str]:
    """The placeholders of `text` that name no variable: not a lead field, not
    `custom.<key>`, not (with `line`) line_name, not (with `tools`) `api_<name>` of
    one of `tool_names`."""
    known_tools = set(tool_names)
    unknown = []
    for name in placeholder_names(text):
        if name in LEAD_FIELDS or (line and name in LINE_FIELDS):
            continue
        if name.startswith(CUSTOM_PREFIX) and len(name) > len(CUSTOM_PREFIX):
            continue
        if tools and name.startswith(API_PREFIX) and name[len(API_PREFIX) :] in known_tools:
            continue
        unknown.append(name)
    return unknown


def render_message(message, line, api_values: dict | None = None) -> str:
    """A message's text for its lead, sent by `line`: what the recipient reads."""
    values = context_for(
        lead=message.lead, line=line, recipient_name=message.recipient_name, api_values=api_values
    )
    return render(message.body, values)
