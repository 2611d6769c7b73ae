"""run_tool: one call of a workspace API tool for a lead, against a local server
standing in for the customer's API; outcomes kept per tool, lead and step."""

import json

import pytest

from campaigns.models import ApiToolRun, Campaign, Step
from campaigns.tools import MISSING, extract, mapping_path, run_tool, run_tools, tool_save
from leads.models import Lead
from tests.campaigns.customer_api import CustomerApi
from tuco.errors import ValidationFailed


@pytest.fixture
def lead(acme):
    return Lead.objects.create(
        workspace=acme,
        first_name='Dana "D"',
        phone="+14155550102",
        email="dana@fbi.test",
        custom_fields={"plan": "gold plus"},
    )


@pytest.fixture
def steps(acme):
    campaign = Campaign.objects.create(workspace=acme, name="Spring")
    return [Step.objects.create(campaign=campaign, position=i, message="Hi") for i in range(2)]


def make_tool(workspace, url, **fields):
    fields.setdefault("name", "Check status")
    fields.setdefault("method", "GET")
    fields.setdefault("response_mapping", "data.status")
    return tool_save(workspace=workspace, url=url, **fields)


# Response mapping


DATA = {
    "data": {"status": "active", "note": None},
    "verified": True,
    "items": [{"id": 1}],
    "grid": [["a", "b"], ["c"]],
}


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ("data.status", "active"),
        ("verified", True),
        ("items[0].id", 1),
        ("items.0.id", 1),
        ("grid[1][0]", "c"),
        ("data", {"status": "active", "note": None}),
        ("data.note", None),
    ],
)
def test_a_dot_path_picks_the_value(mapping, expected):
    assert extract(DATA, mapping) == expected


@pytest.mark.parametrize("mapping", ["data.missing", "items[3].id", "verified.deeper", "grid.x"])
def test_a_dot_path_to_nothing_finds_no_value(mapping):
    assert extract(DATA, mapping) is MISSING


@pytest.mark.parametrize("mapping", ["", "a..b", "a[x]", "[0", "a]", "a.b."])
def test_a_malformed_dot_path_is_refused(mapping):
    with pytest.raises(ValueError):
        mapping_path(mapping)


# Calls


def test_it_sends_the_lead_in_url_body_and_headers(acme, lead, customer_api):
    tool = make_tool(
        acme,
        customer_api.url + "/status?phone={phone}&plan={custom.plan}",
        method="POST",
        body='{"name": "{firstName}", "email": "{email}", "company": "{companyName|none}"}',
        headers={"Authorization": "Bearer secret-token-1234"},
    )
    result = run_tool(tool, lead)
    assert result.ok and result.value == "active" and result.text == "active"
    request = customer_api.requests[-1]
    assert request["method"] == "POST"
    assert request["path"] == "/status?phone=%2B14155550102&plan=gold%20plus"
    assert json.loads(request["body"]) == {
        "name": 'Dana "D"',
        "email": "dana@fbi.test",
        "company": "none",
    }
    assert request["headers"]["Authorization"] == "Bearer secret-token-1234"
    assert request["headers"]["Content-Type"] == "application/json"


def test_booleans_and_numbers_become_text(acme, lead, customer_api):
    assert run_tool(make_tool(acme, customer_api.url + "/status", response_mapping="verified"),
                    lead).text == "true"  # fmt: skip
    tool = make_tool(acme, customer_api.url + "/status", name="Id", response_mapping="items[0].id")
    result = run_tool(tool, lead)
    assert result.value == 7 and result.text == "7"


@pytest.mark.parametrize(
    ("path", "mapping", "error"),
    [
        ("/slow", "data.status", "No answer within 1 s"),
        ("/error", "data.status", "The API answered HTTP 500"),
        ("/text", "data.status", "The answer is not JSON"),
        ("/status", "data.plan", "The answer has no value at data.plan"),
        ("/redirect", "data.status", "The API answered HTTP 302"),
    ],
)
def test_a_failure_is_a_result_not_an_exception(acme, lead, customer_api, path, mapping, error):
    tool = make_tool(acme, customer_api.url + path, response_mapping=mapping)
    result = run_tool(tool, lead)
    assert not result.ok
    assert result.error == error
    assert result.text is None


def test_a_private_target_is_refused_at_call_time_without_the_setting(
    acme, lead, customer_api, settings
):
    tool = make_tool(acme, customer_api.url + "/status")
    settings.API_TOOLS_ALLOW_PRIVATE_TARGETS = False
    result = run_tool(tool, lead)
    assert not result.ok
    assert "non-public address 127.0.0.1" in result.error
    assert customer_api.requests == []


def test_a_private_target_is_refused_when_saved_without_the_setting(acme, settings):
    settings.API_TOOLS_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(ValidationFailed) as info:
        make_tool(acme, "http://127.0.0.1:9/status")
    assert info.value.field == "url"
    assert info.value.code == "API_TOOL_TARGET_NOT_ALLOWED"
    assert "API tools can only reach public addresses" in info.value.message


# Kept per lead and step


def test_one_call_per_tool_lead_and_step(acme, lead, steps, customer_api):
    tool = make_tool(acme, customer_api.url + "/status")
    first = run_tool(tool, lead, step=steps[0])
    again = run_tool(tool, lead, step=steps[0])
    assert first.ok and not first.cached
    assert again.ok and again.cached and again.value == "active"
    assert len(customer_api.requests) == 1
    run_tool(tool, lead, step=steps[1].pk)
    assert len(customer_api.requests) == 2
    other = Lead.objects.create(workspace=acme, phone="+14155550104")
    run_tool(tool, other, step=steps[0])
    assert len(customer_api.requests) == 3
    assert ApiToolRun.objects.count() == 3


def test_a_failure_is_kept_for_the_step_too(acme, lead, steps, customer_api):
    tool = make_tool(acme, customer_api.url + "/error")
    assert run_tool(tool, lead, step=steps[0]).error == "The API answered HTTP 500"
    kept = run_tool(tool, lead, step=steps[0])
    assert kept.cached and not kept.ok and kept.error == "The API answered HTTP 500"
    assert len(customer_api.requests) == 1


def test_without_a_step_every_run_calls(acme, lead, customer_api):
    tool = make_tool(acme, customer_api.url + "/status")
    run_tool(tool, lead)
    run_tool(tool, lead)
    assert len(customer_api.requests) == 2
    assert ApiToolRun.objects.count() == 0


def test_the_rate_limit_refuses_a_call_and_keeps_nothing(acme, lead, steps, customer_api, settings):
    settings.API_TOOLS_CALLS_PER_MINUTE = 2
    tool = make_tool(acme, customer_api.url + "/status")
    other = Lead.objects.create(workspace=acme, phone="+14155550104")
    third = Lead.objects.create(workspace=acme, phone="+14155550106")
    assert run_tool(tool, lead, step=steps[0]).ok
    assert run_tool(tool, other, step=steps[0]).ok
    limited = run_tool(tool, third, step=steps[0])
    assert not limited.ok and limited.retry_after >= 1
    assert len(customer_api.requests) == 2
    assert not ApiToolRun.objects.filter(lead=third).exists()


# Many at once


@pytest.fixture
def leads(acme):
    return [
        Lead.objects.create(workspace=acme, phone=f"+1415555{i:04d}", custom_fields={"n": i})
        for i in range(12)
    ]


def test_a_batch_reuses_its_connections_and_keeps_each_answer(acme, leads, steps, settings):
    settings.API_TOOLS_ALLOW_PRIVATE_TARGETS = True
    with CustomerApi(keep_alive=True) as api:
        tool = make_tool(acme, api.url + "/status?status=s{custom.n}")
        results = run_tools([(tool, lead, steps[0].pk) for lead in leads])
        assert [r.value for r in results] == [f"s{i}" for i in range(12)]
        assert len(api.requests) == 12
        assert api.connections < 12
        # Asked again (a retry, the next round): every answer is the kept one.
        again = run_tools([(tool, lead, steps[0].pk) for lead in leads])
    assert [r.value for r in again] == [f"s{i}" for i in range(12)]
    assert all(r.cached for r in again)
    assert len(api.requests) == 12
    assert ApiToolRun.objects.count() == 12


def test_a_batch_checks_every_connection_against_private_targets(
    acme, leads, steps, customer_api, settings
):
    tool = make_tool(acme, customer_api.url + "/status")
    settings.API_TOOLS_ALLOW_PRIVATE_TARGETS = False
    results = run_tools([(tool, lead, steps[0].pk) for lead in leads])
    assert not any(r.ok for r in results)
    assert "non-public address 127.0.0.1" in results[0].error
    # Not one request reached the API, on a new connection or a reused one.
    assert customer_api.requests == []


def test_a_batch_keeps_to_the_rate_limit(acme, leads, steps, customer_api, settings):
    settings.API_TOOLS_CALLS_PER_MINUTE = 5
    tool = make_tool(acme, customer_api.url + "/status")
    results = run_tools([(tool, lead, steps[0].pk) for lead in leads])
    assert [r.ok for r in results] == [True] * 5 + [False] * 7
    assert all(r.retry_after >= 1 for r in results[5:])
    assert len(customer_api.requests) == 5
    assert ApiToolRun.objects.count() == 5
