"""Custom fields are bounded in depth and size on create, update and import."""

import json

import pytest

from leads.models import Lead
from leads.services import lead_import


def nested(levels: int) -> str:
    """customFields as JSON text: `levels` objects, one inside the other."""
    return '{"k": ' * (levels - 1) + '{"k": 1}' + "}" * (levels - 1)


def post_raw(api, custom_fields: str):
    body = '{"leads": [{"phone": "+12025551234", "customFields": ' + custom_fields + "}]}"
    return api.post("/api/leads", body, content_type="application/json")


@pytest.mark.parametrize("levels", [6, 300])
def test_create_refuses_custom_fields_nested_too_deep(api, levels):
    response = post_raw(api, nested(levels))
    assert response.status_code == 400
    assert response.json()["error"] == (
        "leads[0].customFields: Must not nest more than 5 levels deep"
    )
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert Lead.objects.count() == 0


def test_create_takes_custom_fields_five_levels_deep_with_arrays(api):
    response = post_raw(api, '{"a": [[{"b": [1]}]], "c": "d"}')
    assert response.status_code == 201
    assert Lead.objects.get().custom_fields == {"a": [[{"b": [1]}]], "c": "d"}


def test_an_array_counts_as_a_level(api):
    response = post_raw(api, '{"a": [[{"b": [[1]]}]]}')
    assert response.status_code == 400


def test_create_refuses_custom_fields_over_10_kb(api):
    response = post_raw(api, json.dumps({"notes": "x" * 10_240}))
    assert response.status_code == 400
    assert response.json()["error"] == "leads[0].customFields: Must be at most 10 KB as JSON"
    assert post_raw(api, json.dumps({"notes": "x" * 10_000})).status_code == 201


def test_update_refuses_custom_fields_nested_too_deep(api, acme):
    lead_id = lead_import(workspace=acme, rows=[{"phone": "+12025551234"}]).lead_ids[0]
    body = '{"customFields": ' + nested(50) + "}"
    response = api.patch(f"/api/leads/{lead_id}", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "customFields: Must not nest more than 5 levels deep"
    assert Lead.objects.get().custom_fields == {}


def test_import_names_the_row_with_custom_fields_too_big(acme):
    rows = [
        {"phone": "+12025551234"},
        {"phone": "+12025551235", "customFields": {"notes": "x" * 20_000}},
    ]
    result = lead_import(workspace=acme, rows=rows, atomic=False, skip_invalid=True)
    assert Lead.objects.count() == 1
    assert [(e.index, e.field, e.message) for e in result.errors] == [
        (1, "customFields", "Must be at most 10 KB as JSON")
    ]
