from django import forms
from django.conf import settings

from leads.models import Lead
from leads.normalize import InvalidIdentifier, region_for

AVAILABILITY_FILTERS = [("", "Any availability"), *Lead.Availability.choices]
PAGE_SIZES = (25, 50, 100)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024

# (value, label) of the lead fields a CSV column can fill. "custom:" keeps the
# column as a custom field named after its header.
IGNORE = ""
CUSTOM = "custom"
MAPPABLE_FIELDS = [
    ("first_name", "First name"),
    ("last_name", "Last name"),
    ("phone", "Phone"),
    ("email", "Email"),
    ("alt_phone1", "Alternate phone 1"),
    ("alt_phone2", "Alternate phone 2"),
    ("alt_phone3", "Alternate phone 3"),
    ("alt_email1", "Alternate email 1"),
    ("alt_email2", "Alternate email 2"),
    ("alt_email3", "Alternate email 3"),
    ("company_name", "Company"),
    ("job_title", "Job title"),
    ("notes", "Notes"),
    ("tags", "Tags (names separated by commas)"),
]
MAPPING_CHOICES = [
    (IGNORE, "Don't import"),
    *MAPPABLE_FIELDS,
    (CUSTOM, "Custom field (named after the column)"),
]
IDENTIFIER_TARGETS = {
    "phone", "email", "alt_phone1", "alt_phone2", "alt_phone3",
    "alt_email1", "alt_email2", "alt_email3",
}  # fmt: skip


class LeadFilterForm(forms.Form):
    """The Leads page's query string. Bad values fall back to defaults rather than erroring."""

    search = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "Name, email, phone or company"}
        ),
    )
    list = forms.ChoiceField(label="List", required=False)
    availability = forms.ChoiceField(
        label="Availability", required=False, choices=AVAILABILITY_FILTERS
    )
    tag = forms.ChoiceField(label="Tag", required=False)
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    limit = forms.TypedChoiceField(
        label="Per page",
        required=False,
        coerce=int,
        choices=[(n, n) for n in PAGE_SIZES],
        empty_value=PAGE_SIZES[1],
        initial=PAGE_SIZES[1],
    )

    def __init__(self, *args, lists=(), tags=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["list"].choices = [("", "All lists")] + [(x.pk, x.name) for x in lists]
        self.fields["tag"].choices = [("", "Any tag")] + [(x.name, x.name) for x in tags]

    def filters(self) -> dict:
        # Fields that did not validate fall back to their defaults; the others still apply.
        data = {}
        if self.is_bound:
            self.full_clean()
            data = self.cleaned_data
        return {
            "search": data.get("search") or "",
            "list_id": data.get("list") or None,
            "availability": data.get("availability") or None,
            "tag": data.get("tag") or None,
            "page": data.get("page") or 1,
            "limit": data.get("limit") or PAGE_SIZES[1],
        }


def _country_code_default():
    return getattr(settings, "LEADS_DEFAULT_COUNTRY_CODE", "+1")


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8 with a header row. Up to 20 MB.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )
    list = forms.ChoiceField(label="Add the leads to", required=False)
    new_list = forms.CharField(
        label="New list name",
        required=False,
        max_length=200,
        help_text="Used when “New list” is chosen above.",
    )
    default_country_code = forms.CharField(
        label="Default country code",
        max_length=6,
        initial=_country_code_default,
        help_text="For phone numbers written without one, e.g. +1 or +44.",
    )

    NEW = "__new__"

    def __init__(self, *args, lists=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.lists = {x.pk: x for x in lists}
        self.fields["list"].choices = [(x.pk, x.name) for x in lists] + [(self.NEW, "New list…")]
        if not lists:
            self.fields["list"].initial = self.NEW

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError("The file is larger than 20 MB.")
        if upload.size == 0:
            raise forms.ValidationError("The file is empty.")
        return upload

    def clean_default_country_code(self):
        value = self.cleaned_data["default_country_code"].strip()
        try:
            region_for(value)
        except InvalidIdentifier as exc:
            raise forms.ValidationError(str(exc)) from None
        return value

    def clean(self):
        data = super().clean()
        choice = data.get("list") or (self.NEW if not self.lists else "")
        if choice == self.NEW:
            name = (data.get("new_list") or "").strip()
            if not name:
                self.add_error("new_list", "Name the new list.")
            elif any(x.name.lower() == name.lower() for x in self.lists.values()):
                self.add_error("new_list", "A list with this name exists: choose it above.")
            data["lead_list"] = None
            data["new_list"] = name
        elif choice in self.lists:
            data["lead_list"] = self.lists[choice]
        else:
            self.add_error("list", "Choose a list.")
        return data


def guess_field(header: str) -> str:
    """The lead field a CSV header most likely means."""
    key = "".join(c for c in header.lower() if c.isalnum())
    aliases = {
        "firstname": "first_name", "first": "first_name", "givenname": "first_name",
        "name": "first_name",
        "lastname": "last_name", "last": "last_name", "surname": "last_name",
        "familyname": "last_name",
        "phone": "phone", "phonenumber": "phone", "mobile": "phone", "cell": "phone",
        "mobilephone": "phone", "tel": "phone", "telephone": "phone",
        "email": "email", "emailaddress": "email", "mail": "email",
        "altphone1": "alt_phone1", "altphone2": "alt_phone2", "altphone3": "alt_phone3",
        "altemail1": "alt_email1", "altemail2": "alt_email2", "altemail3": "alt_email3",
        "company": "company_name", "companyname": "company_name",
        "organization": "company_name", "organisation": "company_name",
        "jobtitle": "job_title", "title": "job_title", "position": "job_title",
        "notes": "notes", "note": "notes",
        "tags": "tags", "tag": "tags", "labels": "tags",
    }  # fmt: skip
    return aliases.get(key, CUSTOM if key else IGNORE)


class ImportMappingForm(forms.Form):
    """One select per CSV column, named column_<index>."""

    def __init__(self, *args, headers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.headers = list(headers)
        used = set()
        for index, header in enumerate(self.headers):
            guess = guess_field(header)
            if guess in used and guess != CUSTOM:
                guess = IGNORE
            used.add(guess)
            self.fields[f"column_{index}"] = forms.ChoiceField(
                label=header or f"Column {index + 1}",
                choices=MAPPING_CHOICES,
                required=False,
                initial=guess,
            )

    def column_fields(self):
        return [self[f"column_{i}"] for i in range(len(self.headers))]

    def clean(self):
        data = super().clean()
        mapping = {}
        seen: dict[str, int] = {}
        for index in range(len(self.headers)):
            target = data.get(f"column_{index}") or IGNORE
            if target == IGNORE:
                continue
            if target != CUSTOM:
                if target in seen:
                    label = dict(MAPPING_CHOICES)[target]
                    self.add_error(
                        f"column_{index}",
                        f"{label} is already filled from column “{self.headers[seen[target]]}”.",
                    )
                    continue
                seen[target] = index
            mapping[index] = target
        if not self.errors and not IDENTIFIER_TARGETS & set(mapping.values()):
            raise forms.ValidationError(
                "Map at least one column to a phone or email: a lead needs one of them."
            )
        data["mapping"] = mapping
        return data


class BulkTagForm(forms.Form):
    """The Leads page's "Add Tag" bulk action."""

    tag_name = forms.CharField(label="Tag", max_length=100, required=False)

    def clean_tag_name(self):
        name = " ".join(self.cleaned_data["tag_name"].split())
        if not name:
            raise forms.ValidationError("Type a tag to add.")
        return name
