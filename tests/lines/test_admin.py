"""Lines in Django admin: changes go through the line service."""

import pytest
from django.forms.models import model_to_dict

from lines.models import Line


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("op", "op@tuco.test", "op-password")
    client.force_login(user)
    return client


def _form(line, **changes):
    data = {k: ("" if v is None else v) for k, v in model_to_dict(line).items()}
    data.pop("relay_password", None)
    data.pop("webhook_token", None)
    data.update(
        {
            "usage_days-TOTAL_FORMS": "0",
            "usage_days-INITIAL_FORMS": "0",
            "usage_days-MIN_NUM_FORMS": "0",
            "usage_days-MAX_NUM_FORMS": "1000",
        }
    )
    data.update(changes)
    data["is_active"] = "on" if data.get("is_active") else ""
    return data


def test_a_bad_server_url_is_a_field_error_and_changes_nothing(operator, acme, make_line):
    line = make_line(acme)
    url = f"/admin/lines/line/{line.pk}/change/"
    response = operator.post(url, _form(line, server_url="ftp://mac:1234"))
    assert response.status_code == 200
    assert b"errorlist" in response.content
    line.refresh_from_db()
    assert line.server_url.startswith("http://127.0.0.1")


def test_a_change_is_saved_through_the_service_and_health_checked(
    operator, acme, make_line, relay, django_capture_on_commit_callbacks
):
    line = make_line(acme)
    Line.objects.filter(pk=line.pk).update(health_checked_at=None)
    url = f"/admin/lines/line/{line.pk}/change/"
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(
            url,
            _form(line, server_url=relay.url.replace("127.0.0.1", "localhost"), first_name="Mia"),
        )
    assert response.status_code == 302, response.content[:2000]
    line.refresh_from_db()
    assert line.first_name == "Mia"
    assert line.health_checked_at is not None


def test_lines_are_not_added_here(operator, acme):
    assert operator.get("/admin/lines/line/add/").status_code == 403


def test_the_safety_state_shows_and_an_operator_lifts_the_action(operator, acme):
    from lines import safety
    from tests.lines.helpers import offline_line

    line = offline_line(acme)
    safety.line_quarantine(line=line, reason="iMessage is dead: test")
    page = operator.get(f"/admin/lines/line/{line.pk}/change/").content.decode()
    assert "iMessage is dead: test" in page

    response = operator.post(
        "/admin/lines/line/",
        {"action": "lift_safety_action", "_selected_action": [line.pk]},
    )
    assert response.status_code == 302
    line.refresh_from_db()
    assert line.safety_action == "" and line.health_status == "healthy"
