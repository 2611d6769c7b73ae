from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from lines.models import Line, LineUsage
from lines.services import line_create, usage_try_consume, utc_today
from tests.lines.relay_fixtures import PASSWORD
from tuco.crypto import decrypt
from tuco.errors import ValidationFailed

LINE_FIELDS = {
    "_id", "phone", "email", "firstName", "lastName", "serverUrl", "isActive",
    "provisioningStatus", "lineType", "dailyNewConversationsLimit",
    "dailyTotalMessagesLimit", "dailyAvailabilityChecksLimit", "deviceGapSeconds",
    "contactGapSeconds", "usage", "healthCheck", "createdAt", "updatedAt",
}  # fmt: skip


def make(workspace, **fields):
    fields.setdefault("server_url", "http://mac.example.test:1234")
    fields.setdefault("relay_password", "pw")
    return line_create(workspace=workspace, **fields)


def test_it_creates_a_line_with_documented_defaults(api):
    response = api.post(
        "/api/lines",
        {
            "serverUrl": "https://mac.example.test:1234/",
            "password": "hunter2",
            "phone": "(415) 555-0132",
            "email": "Line@Example.com",
            "firstName": "Ada",
            "lastName": "Lovelace",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) >= LINE_FIELDS
    assert "password" not in body and "relayPassword" not in body
    assert body["serverUrl"] == "https://mac.example.test:1234"
    assert body["phone"] == "+14155550132"
    assert body["email"] == "line@example.com"
    assert body["lineType"] == "byon"
    assert body["isActive"] is True
    assert body["dailyNewConversationsLimit"] == 50
    assert body["dailyTotalMessagesLimit"] == 150
    assert body["dailyAvailabilityChecksLimit"] == 70
    assert body["deviceGapSeconds"] == 30
    assert body["contactGapSeconds"] == 45
    assert body["usage"] == {
        "date": utc_today().isoformat(),
        "newConversationsCount": 0,
        "totalMessagesCount": 0,
        "availabilityChecksCount": 0,
    }
    assert body["healthCheck"]["consecutiveFailures"] == 0
    assert body["createdAt"].endswith("Z")


def test_it_stores_the_password_encrypted(api, acme):
    api.post(
        "/api/lines", {"serverUrl": "http://mac.test:1234", "password": "s3cret"}, format="json"
    )
    line = Line.objects.get(workspace=acme)
    assert line.relay_password == "s3cret"
    raw = Line.objects.filter(pk=line.pk).values_list("relay_password", flat=True)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT relay_password FROM lines_line WHERE id = %s", [line.pk])
        stored = cursor.fetchone()[0]
    assert "s3cret" not in stored
    assert decrypt(stored) == "s3cret"
    assert list(raw) == ["s3cret"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"password": "x"}, "serverUrl"),
        ({"serverUrl": "not a url", "password": "x"}, "serverUrl"),
        ({"serverUrl": "ftp://mac.test", "password": "x"}, "serverUrl"),
        ({"serverUrl": "http://mac.test:1234"}, "password"),
        ({"serverUrl": "http://mac.test", "password": "x", "phone": "12"}, "phone"),
        ({"serverUrl": "http://mac.test", "password": "x", "email": "nope"}, "email"),
        (
            {"serverUrl": "http://mac.test", "password": "x", "dailyAvailabilityChecksLimit": -1},
            "dailyAvailabilityChecksLimit",
        ),
    ],
)
def test_it_rejects_bad_input(api, acme, body, message):
    response = api.post("/api/lines", body, format="json")
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not Line.objects.filter(workspace=acme).exists()


def test_by_user_lists_lines_with_todays_usage(api, acme):
    line = make(acme, phone="+14155550100")
    usage_try_consume(line=line, kind="availability_checks")
    usage_try_consume(line=line, kind="total_messages")
    response = api.get("/api/lines/by-user")
    assert response.status_code == 200
    [item] = response.json()["lines"]
    assert item["_id"] == line.pk
    assert item["usage"]["availabilityChecksCount"] == 1
    assert item["usage"]["totalMessagesCount"] == 1
    assert item["usage"]["newConversationsCount"] == 0


def test_list_has_no_n_plus_one(api, acme, django_assert_max_num_queries):
    for _index in range(3):
        line = make(acme)
        usage_try_consume(line=line, kind="availability_checks")
    api.get("/api/lines")  # warm up the key's last-used stamp
    with django_assert_max_num_queries(6) as few:
        assert len(api.get("/api/lines").json()["lines"]) == 3
    for _index in range(6):
        make(acme)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(api.get("/api/lines").json()["lines"]) == 9


def test_it_shows_only_todays_usage(api, acme):
    line = make(acme)
    LineUsage.objects.create(line=line, date="2020-01-01", availability_checks_count=9)
    item = api.get(f"/api/lines/{line.pk}").json()
    assert item["usage"]["availabilityChecksCount"] == 0


def test_it_updates_a_line(api, acme):
    line = make(acme)
    response = api.patch(
        f"/api/lines/{line.pk}",
        {"dailyAvailabilityChecksLimit": 10, "isActive": False, "password": "new"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["dailyAvailabilityChecksLimit"] == 10
    assert response.json()["isActive"] is False
    line.refresh_from_db()
    assert line.relay_password == "new"
    assert line.daily_availability_checks_limit == 10


def test_patch_validates_and_saves_nothing(api, acme):
    line = make(acme)
    response = api.patch(
        f"/api/lines/{line.pk}", {"serverUrl": "nope", "firstName": "X"}, format="json"
    )
    assert response.status_code == 400
    line.refresh_from_db()
    assert line.first_name == ""


def test_it_deletes_a_line(api, acme):
    line = make(acme)
    assert api.delete(f"/api/lines/{line.pk}").status_code == 200
    assert not Line.objects.filter(pk=line.pk).exists()
    assert api.get(f"/api/lines/{line.pk}").status_code == 404


@pytest.mark.parametrize("line_id", ["nope", "0" * 24])
def test_unknown_or_malformed_id_is_404(api, line_id):
    for method in ("get", "patch", "delete"):
        response = getattr(api, method)(f"/api/lines/{line_id}", {}, format="json")
        assert response.status_code == 404
        assert response.json() == {"error": "Line not found", "code": "NOT_FOUND"}


def test_other_workspaces_lines_are_invisible(api, globex_api, acme):
    line = make(acme)
    assert globex_api.get("/api/lines/by-user").json() == {"lines": []}
    for method in ("get", "patch", "delete"):
        response = getattr(globex_api, method)(f"/api/lines/{line.pk}", {}, format="json")
        assert response.status_code == 404
        assert response.json() == {"error": "Line not found", "code": "NOT_FOUND"}
    assert Line.objects.filter(pk=line.pk, is_active=True).exists()


def test_members_can_read_but_not_write(acme, bob):
    line = make(acme)
    client = APIClient()
    client.force_login(bob)
    assert client.get("/api/lines").status_code == 200
    assert client.get(f"/api/lines/{line.pk}").status_code == 200
    body = {"serverUrl": "http://mac.test", "password": "x"}
    assert client.post("/api/lines", body, format="json").status_code == 403
    patch = client.patch(f"/api/lines/{line.pk}", {"isActive": False}, format="json")
    assert patch.status_code == 403
    assert client.delete(f"/api/lines/{line.pk}").status_code == 403
    assert Line.objects.filter(pk=line.pk, is_active=True).exists()


def test_owner_can_write_with_a_session(acme, alice):
    client = APIClient()
    client.force_login(alice)
    body = {"serverUrl": "http://mac.test", "password": "x"}
    assert client.post("/api/lines", body, format="json").status_code == 201


def test_line_saved_is_sent_on_commit(acme, django_capture_on_commit_callbacks):
    from lines.signals import line_saved

    seen = []

    def receiver(sender, **kwargs):
        seen.append(kwargs)

    line_saved.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            line = make(acme)
        assert seen == [{"signal": line_saved, "line_id": line.pk, "created": True,
                         "workspace_id": acme.pk, "left_relay": None}]  # fmt: skip
    finally:
        line_saved.disconnect(receiver)


def test_create_line_command_prints_the_id(acme):
    out = StringIO()
    call_command(
        "create_line",
        "--workspace", acme.pk,
        "--server-url", "http://127.0.0.1:1234",
        "--password", "secret",
        "--phone", "+14155550100",
        "--name", "Ada Lovelace",
        stdout=out,
    )  # fmt: skip
    line = Line.objects.get(pk=out.getvalue().strip())
    assert line.workspace == acme
    assert line.relay_password == "secret"
    assert (line.first_name, line.last_name) == ("Ada", "Lovelace")


def test_create_line_command_finds_workspace_by_name_and_rejects_bad_input(acme):
    out = StringIO()
    call_command(
        "create_line", "--workspace", "Acme", "--server-url", "http://mac.test",
        "--password", "x", stdout=out,
    )  # fmt: skip
    assert Line.objects.filter(pk=out.getvalue().strip(), workspace=acme).exists()
    with pytest.raises(CommandError, match="No workspace"):
        call_command("create_line", "--workspace", "Nope", "--server-url", "http://x.test",
                     "--password", "x")  # fmt: skip
    with pytest.raises(CommandError, match="serverUrl"):
        call_command("create_line", "--workspace", "Acme", "--server-url", "bad",
                     "--password", "x")  # fmt: skip


@pytest.mark.parametrize(
    ("internal", "shown"), [("unknown", "healthy"), ("healthy", "healthy"), ("down", "down")]
)
def test_health_status_is_healthy_or_down(api, acme, internal, shown):
    line = make(acme)
    Line.objects.filter(pk=line.pk).update(health_status=internal)
    body = api.get(f"/api/lines/{line.pk}").json()
    assert body["healthCheck"]["status"] == shown


def test_a_new_line_reports_its_first_health_check(api, relay, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/lines", {"serverUrl": relay.url, "password": PASSWORD}, format="json"
        )
    assert response.status_code == 201
    health = api.get(f"/api/lines/{response.json()['_id']}").json()["healthCheck"]
    assert (health["status"], health["consecutiveFailures"]) == ("healthy", 0)
    assert health["lastCheckedAt"].endswith("Z")
    assert relay.stats["by_endpoint"]["server_info"] == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://relay:1234",
        "http://macmini:1234",
        "http://localhost",
        "https://mac.example.com:1234/",
        "http://192.168.1.20:1234",
        "http://[::1]:1234",
        "https://my-mac.tail1234.ts.net",
        "http://relay.local:1234/bluebubbles",
        "http://tuco_relay_1:1234",
    ],
)
def test_any_host_name_is_a_valid_server_url(acme, url):
    line = make(acme, server_url=url)
    assert line.server_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "relay:1234",
        "ftp://relay",
        "http://",
        "http://:1234",
        "http://re lay:1234",
        "http://-relay-:1234",
        "http://relay:99999",
        "http://relay:port",
        "http://relay..local",
        "http://relay:1234?x=1",
    ],
)
def test_a_malformed_server_url_is_rejected(acme, url):
    with pytest.raises(ValidationFailed, match="serverUrl"):
        make(acme, server_url=url)
