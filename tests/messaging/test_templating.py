from types import SimpleNamespace

from messaging.templating import (
    api_names,
    context_for,
    placeholder_names,
    render,
    unknown_placeholders,
)


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


def test_custom_fields_by_their_prefix():
    values = context_for(lead=lead(custom_fields={"plan": "gold", "ok": True, "deep": {"a": 1}}))
    text = "{custom.plan} {custom.ok} {custom.deep|none} {custom.missing|n/a}"
    assert render(text, values) == "gold true none n/a"


def test_api_values_and_their_fallbacks():
    values = context_for(lead=lead(), api_values={"check_status": "active", "down": None})
    assert render("{api_check_status|x} {api_down|fallback} {api_other|y}", values) == (
        "active fallback y"
    )


def test_escape_applies_to_values_and_defaults_but_not_the_text():
    values = context_for(lead=lead(first_name='Dana "D"'))
    escaped = render('{"n": "{firstName}", "c": "{companyName|a"b}"}', values, escape=repr)
    assert escaped == """{"n": "'Dana "D"'", "c": "'a"b'"}"""


def test_placeholder_names_and_api_names():
    text = "Hi {firstName|there} {{ api_check }} {api_check|x} {custom.plan} {not a name}"
    assert placeholder_names(text) == ["firstName", "api_check", "custom.plan"]
    assert api_names(text) == ["check"]


def test_unknown_placeholders():
    text = "{firstName} {line_name} {custom.plan} {api_known} {api_gone} {nickname} {custom.}"
    assert unknown_placeholders(text, tool_names={"known"}) == ["api_gone", "nickname", "custom."]
    assert unknown_placeholders("{line_name} {api_known}", line=False, tools=False) == [
        "line_name",
        "api_known",
    ]
