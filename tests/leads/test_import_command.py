import pytest
from django.core.management import CommandError, call_command

from leads.models import Lead, LeadList

CSV = """First Name,Last Name,E-mail,Phone Number,Company,Title,Favourite colour
Ada,Lovelace,ADA@example.com,(202) 555-0001,Analytical,Countess,green
Grace,Hopper,grace@example.com,202.555.0002,Navy,Admiral,

Bad,Phone,bad@example.com,12345,,,
Ada,Again,ada@example.com,,,,
"""


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("\ufeff" + CSV, encoding="utf-8")
    return path


def test_it_imports_a_csv_and_reports_invalid_rows(acme, csv_file, capsys):
    call_command("import_leads", str(csv_file), "--workspace", "Acme", "--list", "Conference")
    out, err = capsys.readouterr()
    lead_list = LeadList.objects.get(workspace=acme, name="Conference")
    assert "2 saved, 1 duplicates" in out
    assert "1 invalid" in out
    assert "line 5: phone: Invalid phone number" in out
    assert "rows/s" in err
    ada = Lead.objects.get(email="ada@example.com")
    assert (ada.first_name, ada.phone, ada.company_name, ada.job_title, ada.source) == (
        "Ada", "+12025550001", "Analytical", "Countess", "csv",
    )  # fmt: skip
    assert ada.custom_fields == {"Favourite colour": "green"}
    assert list(lead_list.leads.order_by("first_name").values_list("first_name", flat=True)) == [
        "Ada",
        "Grace",
    ]


def test_strict_mode_saves_nothing(acme, csv_file):
    with pytest.raises(CommandError, match="line 5: leads\\[2\\].phone: Invalid phone number"):
        call_command(
            "import_leads", str(csv_file), "--workspace", acme.pk, "--list", "X", "--strict"
        )
    assert Lead.objects.count() == 0


def test_it_needs_a_known_workspace_and_an_identifier_column(acme, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_leads", str(tmp_path / "x.csv"), "--workspace", "Nope", "--list", "X")
    path = tmp_path / "names.csv"
    path.write_text("First Name,Last Name\nA,B\n")
    with pytest.raises(CommandError, match="No workspace"):
        call_command("import_leads", str(path), "--workspace", "Nope", "--list", "X")
    with pytest.raises(CommandError, match="No phone or email column"):
        call_command("import_leads", str(path), "--workspace", "Acme", "--list", "X")
