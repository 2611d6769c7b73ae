"""Input rules of the availability endpoints that their serializers carry."""

import pytest

from leads.models import Lead


@pytest.mark.parametrize("body", [{"leadIds": []}, {"address": "  "}, {}])
def test_lead_check_without_an_address_lead_ids_or_a_list_finds_nothing(api, body):
    response = api.post("/api/leads/check-availability", body, format="json")
    assert response.status_code == 404
    assert response.json() == {"error": "No leads found to check"}


def test_lead_check_reads_force_from_the_query(api, acme, make_line):
    make_line(acme)
    person = Lead.objects.create(workspace=acme, phone="+14155550132")
    response = api.get(f"/api/leads/check-availability?id=%20{person.pk}%20&force=YES")
    assert response.status_code == 200
    assert response.json()["leadId"] == person.pk


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"addresses": ["nope"]}, "address: 'nope' is not a valid phone number"),
        (
            {"addresses": ["+14155550132", "nope"]},
            "addresses.1: 'nope' is not a valid phone number",
        ),
        ({"address": "a@"}, "address: 'a@' is not a valid email address"),
    ],
)
def test_addresses_name_the_bad_one(api, body, error):
    response = api.post("/api/check-availability", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": error, "code": "VALIDATION_ERROR"}


def test_one_address_in_the_query_is_required(api):
    response = api.get("/api/check-availability?address=")
    assert response.status_code == 400
    assert response.json() == {"error": "Address parameter is required (phone or email)"}


@pytest.mark.parametrize("body", [{}, {"address": ""}, {"addresses": []}, {"addresses": None}])
def test_an_address_or_addresses_is_required(api, body):
    response = api.post("/api/check-availability", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "addresses array is required and must not be empty"}


def test_at_most_100_addresses(api):
    addresses = [f"+1415555{n:04d}" for n in range(101)]
    response = api.post("/api/check-availability", {"addresses": addresses}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "Maximum 100 addresses per request"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"phones": [" "], "emails": [""]}, "No phone or email addresses provided"),
        # Blank entries are dropped before the rest are numbered.
        ({"phones": ["", "nope"]}, "phones.0: 'nope' is not a valid phone number"),
        (
            {"phones": ["+14155550132"], "emails": ["a@"]},
            "emails.0: 'a@' is not a valid email address",
        ),
        ({"phones": "x"}, 'phones: Expected a list of items but got type "str".'),
    ],
)
def test_round_robin_bad_bodies_carry_available_and_reason(api, body, error):
    response = api.post("/api/check-availability-rr", body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "error": error, "code": "VALIDATION_ERROR", "available": False, "reason": error,
    }  # fmt: skip
