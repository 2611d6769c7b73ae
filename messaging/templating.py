"""Placeholders in message text, filled from the lead at send time.

`{{firstName}}` and `{firstName}` both work, with optional spaces inside the
braces, and a default after a pipe: `{firstName|there}`. Known fields:
firstName, lastName, companyName, email, phone, jobTitle, line_name, and every
key of the lead's customFields. A placeholder whose value is empty or unknown is
replaced by its default, or by nothing when it has none, so a recipient never
sees raw braces for a name we do not have. Text in braces that is not a
placeholder shape (spaces in the name, nested braces) is left untouched.
"""

from __future__ import annotations

import re

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


def context_for(*, lead=None, line=None, recipient_name: str = "") -> dict[str, str]:
    """The placeholder values for one send."""
    values: dict[str, str] = {}
    if lead is not None:
        for key, value in (lead.custom_fields or {}).items():
            if isinstance(key, str) and value is not None and not isinstance(value, dict | list):
                values[key] = str(value)
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
    return values


def render(text: str, values: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name = match.group("n2") or match.group("n1")
        default = match.group("d2") if match.group("n2") else match.group("d1")
        value = str(values.get(name, "") or "").strip()
        if value:
            return value
        return (default or "").strip()

    return _PLACEHOLDER.sub(replace, text or "")
