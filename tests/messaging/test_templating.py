from types import SimpleNamespace

from messaging.templating import context_for, render


def lead(**fields):
    base = {
        "first_name": "", "last_name": "", "company_name": "", "email": "", "phone": "",
        "job_title": "", "custom_fields": {},
    }  # fmt: skip
    base.update(fields)
    return SimpleNamespace(**base)


def test_both_brace_styles_and_spaces():
    values = context_for(lead=lead(first_name="Dana", company_name="FBI"))
    assert render("Hi {{firstName}} at { companyName }!", values) == "Hi Dana at FBI!"


def test_a_default_is_used_for_an_empty_or_unknown_field():
    values = context_for(lead=lead())
    assert render("Hi {firstName|there}, {{nickname | friend}}", values) == "Hi there, friend"


def test_an_unknown_placeholder_without_default_becomes_empty():
    assert render("Hi {nickname}!", {}) == "Hi !"


def test_custom_fields_and_line_name():
    line = SimpleNamespace(first_name="Ava", last_name="Line", display_name="Ava Line")
    values = context_for(lead=lead(custom_fields={"city": "Austin", "n": 3}), line=line)
    assert render("{city} {n} from {line_name}", values) == "Austin 3 from Ava Line"


def test_the_recipient_name_fills_a_missing_first_name():
    values = context_for(lead=lead(), recipient_name="Fox Mulder")
    assert render("{firstName} {lastName}", values) == "Fox Mulder"


def test_non_placeholder_braces_are_left_alone():
    assert render('JSON {"a": 1} and { not a name }', {}) == 'JSON {"a": 1} and { not a name }'
