"""Reading leads from CSV files: header spellings to lead fields, one dict per row.

Shared by the `import_leads` command and the dashboard's import page.
"""

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# Header (lowercased, letters and digits only) -> lead field (API name).
HEADER_ALIASES = {
    **dict.fromkeys(["firstname", "first", "fname", "givenname", "forename"], "firstName"),
    **dict.fromkeys(["lastname", "last", "lname", "surname", "familyname"], "lastName"),
    **dict.fromkeys(["name", "fullname", "contactname", "contact"], "fullName"),
    **dict.fromkeys(
        ["email", "emailaddress", "mail", "workemail", "primaryemail", "emailid"], "email"
    ),
    **dict.fromkeys(
        [
            "phone",
            "phonenumber",
            "phoneno",
            "mobile",
            "mobilephone",
            "mobilenumber",
            "cell",
            "cellphone",
            "cellnumber",
            "telephone",
            "tel",
            "primaryphone",
            "number",
        ],
        "phone",
    ),
    **dict.fromkeys(
        ["altphone1", "altphone", "phone2", "secondaryphone", "otherphone"], "altPhone1"
    ),
    **dict.fromkeys(["altphone2", "phone3"], "altPhone2"),
    **dict.fromkeys(["altphone3", "phone4"], "altPhone3"),
    **dict.fromkeys(
        ["altemail1", "altemail", "email2", "secondaryemail", "otheremail"], "altEmail1"
    ),
    **dict.fromkeys(["altemail2", "email3"], "altEmail2"),
    **dict.fromkeys(["altemail3", "email4"], "altEmail3"),
    **dict.fromkeys(
        [
            "company",
            "companyname",
            "organization",
            "organisation",
            "org",
            "account",
            "accountname",
            "business",
        ],
        "companyName",
    ),
    **dict.fromkeys(["title", "jobtitle", "position", "role", "job"], "jobTitle"),
    **dict.fromkeys(["notes", "note", "comments", "comment", "description"], "notes"),
    **dict.fromkeys(["source", "leadsource"], "source"),
    # One cell of names separated by commas or semicolons.
    **dict.fromkeys(["tags", "tag", "labels", "label"], "tags"),
}
LINE_KEY = "_line"
_NON_ALNUM = re.compile(r"[^a-z0-9]")


def header_key(header: str) -> str:
    return _NON_ALNUM.sub("", header.strip().lower())


@dataclass
class HeaderMapping:
    """Which column feeds which lead field; other columns go to customFields."""

    fields: dict[int, str] = field(default_factory=dict)  # column index -> field
    custom: dict[int, str] = field(default_factory=dict)  # column index -> custom key

    @classmethod
    def from_headers(cls, headers: list[str]) -> "HeaderMapping":
        mapping = cls()
        taken = set()
        for index, header in enumerate(headers):
            name = HEADER_ALIASES.get(header_key(header))
            if name and name not in taken:
                mapping.fields[index] = name
                taken.add(name)
            elif header.strip():
                mapping.custom[index] = header.strip()
        return mapping

    def has_identifier(self) -> bool:
        wanted = {"phone", "email", "altPhone1", "altPhone2", "altPhone3"}
        wanted |= {"altEmail1", "altEmail2", "altEmail3"}
        return bool(wanted & set(self.fields.values()))

    def to_row(self, cells: list[str]) -> dict:
        row = {}
        for index, name in self.fields.items():
            if index < len(cells):
                value = cells[index].strip()
                if value:
                    row[name] = value
        full = row.pop("fullName", None)
        if full:
            first, _, last = full.partition(" ")
            row.setdefault("firstName", first)
            if last.strip():
                row.setdefault("lastName", last.strip())
        custom = {}
        for index, key in self.custom.items():
            if index < len(cells) and cells[index].strip():
                custom[key] = cells[index].strip()
        if custom:
            row["customFields"] = custom
        return row


def read_csv_leads(lines: Iterable[str]) -> tuple[HeaderMapping, Iterator[dict]]:
    """Header mapping and a lazy iterator of lead rows (API field names).

    Open the file with encoding="utf-8-sig" and newline="" so a BOM and quoted
    line breaks are handled. Blank lines are skipped. Each row carries its line
    number in the file under LINE_KEY (ignored by the import, used in reports).
    """
    reader = csv.reader(lines)
    try:
        headers = next(reader)
    except StopIteration:
        raise ValueError("The file is empty") from None
    mapping = HeaderMapping.from_headers(headers)
    if not mapping.has_identifier():
        raise ValueError("No phone or email column found in the header row")

    def rows() -> Iterator[dict]:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            row = mapping.to_row(cells)
            row[LINE_KEY] = reader.line_num
            yield row

    return mapping, rows()
