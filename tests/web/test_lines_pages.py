import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from lines.models import Line, LineUsage
from lines.relay import clear_client_cache
from lines.services import line_create, utc_today
from lines.simulator import RelaySimulator

PASSWORD = "relay-secret"


@pytest.fixture
def sim():
    with RelaySimulator(password=PASSWORD, delivery_delay=0) as simulator:
        yield simulator
    clear_client_cache()


def make_line(workspace, server_url="https://mac.acme.test:1234", **fields):
    fields.setdefault("relay_password", PASSWORD)
    return line_create(workspace=workspace, server_url=server_url, **fields)


def form_data(**overrides):
    data = {
        "server_url": "https://mac.acme.test:1234",
        "password": PASSWORD,
        "phone": "+1 202 555 0100",
        "email": "",
        "first_name": "Ava",
        "last_name": "Line",
        "is_active": "on",
        "daily_new_conversations_limit": "40",
        "daily_total_messages_limit": "120",
        "daily_availability_checks_limit": "60",
        "device_gap_seconds": "30",
        "contact_gap_seconds": "45",
        "check_gap_seconds": "3",
    }
    data.update(overrides)
    return data


def test_it_shows_todays_usage_against_each_cap(acme, alice_client):
    line = make_line(acme, first_name="Ava", daily_total_messages_limit=150)
    LineUsage.objects.create(
        line=line, date=utc_today(), total_messages_count=42, new_conversations_count=7
    )
    page = alice_client.get("/lines/").content.decode()
    assert "Ava" in page
    assert 'value="42" max="150"' in page
    assert "42 / 150" in page
    assert "7 / 50" in page
    assert "0 / 70" in page


def test_list_runs_a_fixed_number_of_queries(acme, alice_client, django_assert_num_queries):
    make_line(acme)
    alice_client.get("/lines/")  # warm the session
    with CaptureQueriesContext(connection) as one:
        alice_client.get("/lines/")
    for i in range(5):
        line = make_line(acme, server_url=f"https://mac{i}.acme.test")
        LineUsage.objects.create(line=line, date=utc_today(), total_messages_count=i)
    with django_assert_num_queries(len(one.captured_queries)):
        response = alice_client.get("/lines/")
    assert response.content.decode().count('id="line-') == 6


def test_it_never_shows_another_workspaces_lines(acme, globex, alice_client, charlie_client):
    theirs = make_line(globex, server_url="https://globex-mac.test", first_name="Gloria")
    assert b"Gloria" not in alice_client.get("/lines/").content
    assert alice_client.get(f"/lines/{theirs.pk}/edit/").status_code == 404
    assert alice_client.post(f"/lines/{theirs.pk}/delete/").status_code == 404
    assert alice_client.post(f"/lines/{theirs.pk}/check/").status_code == 404
    assert Line.objects.filter(pk=theirs.pk).exists()
    assert b"Gloria" in charlie_client.get("/lines/").content


def test_it_adds_a_line(acme, alice_client):
    response = alice_client.post("/lines/new/", form_data())
    assert response.status_code == 302
    line = Line.objects.get(workspace=acme)
    assert line.phone == "+12025550100"
    assert line.relay_password == PASSWORD
    assert line.daily_total_messages_limit == 120
    assert b"Line Ava Line added." in alice_client.get("/lines/").content


def test_it_shows_field_errors_in_place_and_keeps_the_input(acme, alice_client):
    response = alice_client.post(
        "/lines/new/", form_data(server_url="not a url", daily_total_messages_limit="-1")
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Ensure this value is greater than or equal to 0." in page
    assert 'value="+1 202 555 0100"' in page
    assert not Line.objects.exists()
    # The service's own validation lands on its field too.
    response = alice_client.post("/lines/new/", form_data(server_url="ftp://mac.acme.test"))
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_server_url_errors"' in page
    assert "Enter a valid http(s) URL" in page
    assert 'value="ftp://mac.acme.test"' in page
    assert not Line.objects.exists()


def test_password_is_required_for_a_new_line(acme, alice_client):
    response = alice_client.post("/lines/new/", form_data(password=""))
    assert response.status_code == 400
    assert b'id="id_password_errors"' in response.content


def test_editing_with_a_blank_password_keeps_it(acme, alice_client):
    line = make_line(acme, first_name="Ava")
    page = alice_client.get(f"/lines/{line.pk}/edit/").content.decode()
    assert PASSWORD not in page
    assert 'value="Ava"' in page
    response = alice_client.post(
        f"/lines/{line.pk}/edit/", form_data(password="", first_name="Bea", is_active="")
    )
    assert response.status_code == 302
    line.refresh_from_db()
    assert (line.first_name, line.relay_password, line.is_active) == ("Bea", PASSWORD, False)
    alice_client.post(f"/lines/{line.pk}/edit/", form_data(password="new-secret"))
    line.refresh_from_db()
    assert line.relay_password == "new-secret"


def test_it_deletes_after_confirmation(acme, alice_client):
    line = make_line(acme, first_name="Ava")
    confirm = alice_client.get(f"/lines/{line.pk}/delete/")
    assert b"Delete Ava?" in confirm.content
    assert Line.objects.filter(pk=line.pk).exists()
    response = alice_client.post(f"/lines/{line.pk}/delete/")
    assert response.status_code == 302
    assert not Line.objects.filter(pk=line.pk).exists()


def test_members_see_lines_but_cannot_change_them(acme, bob_client):
    line = make_line(acme)
    page = bob_client.get("/lines/").content.decode()
    assert "Add line" not in page
    assert bob_client.get("/lines/new/").status_code == 403
    assert bob_client.post("/lines/new/", form_data()).status_code == 403
    assert bob_client.post(f"/lines/{line.pk}/delete/").status_code == 403
    assert Line.objects.filter(workspace=acme).count() == 1


def test_check_now_records_health_and_swaps_the_row(acme, alice_client, sim):
    line = make_line(acme, server_url=sim.url, first_name="Ava")
    response = alice_client.post(f"/lines/{line.pk}/check/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    row = response.content.decode()
    assert row.startswith(f'<tr id="line-{line.pk}">')
    assert "Healthy" in row
    assert "just now</time>" in row
    line.refresh_from_db()
    assert line.health_status == "healthy"

    sim.configure(helper_connected=False)
    row = alice_client.post(f"/lines/{line.pk}/check/", HTTP_HX_REQUEST="true").content.decode()
    assert "Private API helper is not connected" in row
    assert "1 failure in a row" in row


def test_anonymous_visitors_are_sent_to_login(db):
    from django.test import Client

    assert Client().get("/lines/")["Location"] == "/login/?next=/lines/"


# Line safety on the page


def test_it_shows_risk_action_and_a_fourteen_day_chart(acme, alice_client):
    from datetime import timedelta

    from django.utils import timezone

    from lines import safety

    line = make_line(acme, first_name="Ava")
    now = timezone.now()
    for _ in range(10):
        safety.line_evidence_record(line_id=line.pk, kind="sent", at=now)
    safety.line_evidence_record(line_id=line.pk, kind="delivered", at=now, amount=8)
    safety.line_evidence_record(line_id=line.pk, kind="sent", at=now - timedelta(days=3), amount=4)
    safety.line_quarantine(line=Line.objects.get(pk=line.pk), reason="iMessage is dead: test")

    page = alice_client.get("/lines/").content.decode()
    assert "Low risk" in page
    assert "8" in page and "80.0% delivered" in page
    assert "Quarantined</strong> until" in page
    assert "iMessage is dead: test" in page
    assert "Lift action" in page
    assert page.count('<svg class="line-chart"') == 1
    assert "Sent 14" in page  # the legend's 14-day total
    assert "cdn" not in page.lower()
    # The banner names the line on every dashboard page.
    assert "line-banner" in page and "is quarantined" in page


def test_an_owner_lifts_the_action_from_the_page(acme, alice_client):
    from lines import safety

    line = make_line(acme, first_name="Ava")
    safety.line_quarantine(line=Line.objects.get(pk=line.pk), reason="iMessage is dead: test")

    response = alice_client.post(f"/lines/{line.pk}/override/")

    assert response.status_code == 302
    line.refresh_from_db()
    assert line.safety_action == "" and line.health_status == "healthy"
    assert line.safety_override_until is not None
    page = alice_client.get("/lines/").content.decode()
    assert "line-banner" not in page
    assert "Automatic actions overridden until" in page


def test_a_member_cannot_lift_an_action(acme, bob_client):
    from lines import safety

    line = make_line(acme, first_name="Ava")
    safety.line_quarantine(line=Line.objects.get(pk=line.pk), reason="iMessage is dead: test")
    assert bob_client.post(f"/lines/{line.pk}/override/").status_code == 403
    assert Line.objects.get(pk=line.pk).safety_action == "quarantined"


# A new relay callback URL


def _relay_registrations(simulator) -> list[str]:
    from types import SimpleNamespace

    from lines.relay import get_client

    client = get_client(SimpleNamespace(server_url=simulator.url, relay_password=PASSWORD))
    return sorted(hook["url"] for hook in client.list_webhooks())


def test_an_owner_gives_a_line_a_new_callback_url_from_the_page(
    acme, alice, sim, django_capture_on_commit_callbacks
):
    import re

    from django.test import Client

    from messaging.inbound import relay_webhook_url

    with django_capture_on_commit_callbacks(execute=True):
        line = make_line(acme, server_url=sim.url, first_name="Ava")
    old_url = relay_webhook_url(line)
    assert _relay_registrations(sim) == [old_url]

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = client.get("/lines/").content.decode()
    assert "New callback URL" in page
    assert f'hx-post="/lines/{line.pk}/rotate-callback-token/"' in page
    assert 'hx-confirm="Give Ava' in page
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    # Without the CSRF token nothing changes.
    assert client.post(f"/lines/{line.pk}/rotate-callback-token/").status_code == 403
    assert _relay_registrations(sim) == [old_url]

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/lines/{line.pk}/rotate-callback-token/",
            HTTP_HX_REQUEST="true",
            HTTP_X_CSRFTOKEN=token,
        )

    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith(f'<tr id="line-{line.pk}">')
    assert 'hx-swap-oob="beforeend:#flash"' in body
    assert "Line Ava has a new relay callback URL; the old one no longer works." in body
    line.refresh_from_db()
    new_url = relay_webhook_url(line)
    assert new_url != old_url
    # The relay's registration moved to the new URL.
    assert _relay_registrations(sim) == [new_url]


def test_without_htmx_the_new_callback_url_is_a_redirect_with_a_message(acme, alice_client):
    line = make_line(acme, first_name="Ava")
    token = line.webhook_token
    response = alice_client.post(f"/lines/{line.pk}/rotate-callback-token/", follow=True)
    assert response.redirect_chain == [("/lines/", 302)]
    assert "Line Ava has a new relay callback URL" in response.content.decode()
    line.refresh_from_db()
    assert line.webhook_token != token


def test_a_member_cannot_give_a_line_a_new_callback_url(acme, globex, bob_client, alice_client):
    line = make_line(acme, first_name="Ava")
    token = line.webhook_token
    assert "New callback URL" not in bob_client.get("/lines/").content.decode()
    assert bob_client.post(f"/lines/{line.pk}/rotate-callback-token/").status_code == 403
    theirs = make_line(globex, server_url="https://globex-mac.test")
    assert alice_client.post(f"/lines/{theirs.pk}/rotate-callback-token/").status_code == 404
    assert alice_client.get(f"/lines/{line.pk}/rotate-callback-token/").status_code == 405
    line.refresh_from_db()
    assert line.webhook_token == token
