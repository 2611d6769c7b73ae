import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

from leads import availability
from leads.availability import (
    AvailabilityQuotaExhausted,
    NoActiveLine,
    availability_check_address,
    availability_check_lead,
)
from leads.models import AvailabilityCacheEntry, Lead
from leads.signals import lead_availability_updated
from lines.models import Line
from lines.relay import get_client
from lines.services import line_create, usage_for
from lines.simulator import RelaySimulator
from tests.lines.relay_fixtures import PASSWORD, availability_requests
from tuco.errors import ValidationFailed

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def lead(workspace, **fields):
    return Lead.objects.create(workspace=workspace, **fields)


def checks_today(line, now=NOON):
    return usage_for(line=line, now=now).availability_checks_count


def test_it_asks_the_relay_and_caches_the_answer(acme, relay, make_line):
    line = make_line(acme)
    first = availability_check_address(workspace=acme, address="(415) 555-0132", now=NOON)
    assert first == availability.AddressResult("+14155550132", True, "available", False, line.pk)
    second = availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    assert (second.available, second.from_cache) == (True, True)
    assert availability_requests(relay) == 1
    assert checks_today(line) == 1

    forced = availability_check_address(
        workspace=acme, address="+14155550132", force=True, now=NOON
    )
    assert (forced.available, forced.from_cache) == (True, False)
    assert availability_requests(relay) == 2


def test_emails_are_lowercased_and_checked(acme, relay, make_line):
    make_line(acme)
    result = availability_check_address(workspace=acme, address=" Tim@iCloud.com ", now=NOON)
    assert (result.address, result.available) == ("tim@icloud.com", True)
    result = availability_check_address(workspace=acme, address="tim@example.com", now=NOON)
    assert (result.address, result.available, result.status) == (
        "tim@example.com", False, "unavailable",
    )  # fmt: skip


def test_a_negative_answer_is_trusted_for_less_time(acme, relay, make_line, settings):
    settings.AVAILABILITY_CACHE_SECONDS = 7 * 86400
    settings.AVAILABILITY_NEGATIVE_CACHE_SECONDS = 86400
    make_line(acme)
    availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    availability_check_address(workspace=acme, address="+14155550133", now=NOON)
    later = NOON + timedelta(days=2)
    assert availability_check_address(workspace=acme, address="+14155550132", now=later).from_cache
    assert not availability_check_address(
        workspace=acme, address="+14155550133", now=later
    ).from_cache
    much_later = NOON + timedelta(days=8)
    assert not availability_check_address(
        workspace=acme, address="+14155550132", now=much_later
    ).from_cache


def test_the_cache_is_per_workspace(acme, globex, relay, make_line):
    make_line(acme)
    make_line(globex)
    availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    result = availability_check_address(workspace=globex, address="+14155550132", now=NOON)
    assert not result.from_cache
    assert availability_requests(relay) == 2
    assert AvailabilityCacheEntry.objects.count() == 2


@pytest.mark.parametrize("address", ["", "   ", "12", "not an address", "a@b", None, 42])
def test_it_rejects_malformed_addresses(acme, relay, make_line, address):
    make_line(acme)
    with pytest.raises(ValidationFailed):
        availability_check_address(workspace=acme, address=address, now=NOON)
    assert availability_requests(relay) == 0


def test_no_active_line(acme):
    with pytest.raises(NoActiveLine) as caught:
        availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    assert caught.value.body() == {"error": "No active line configured", "code": "NO_ACTIVE_LINE"}
    assert caught.value.status == 400


def test_quota_exhaustion(acme, relay, make_line):
    make_line(acme, daily_availability_checks_limit=2)
    for number in ("+14155550130", "+14155550131"):
        availability_check_address(workspace=acme, address=number, now=NOON)
    with pytest.raises(AvailabilityQuotaExhausted) as caught:
        availability_check_address(workspace=acme, address="+14155550134", now=NOON)
    error = caught.value
    assert (error.status, error.headers) == (429, {"Retry-After": "3600"})
    assert error.body()["available"] is False
    assert error.body()["reason"] == "Daily availability check quota exhausted"
    # Cached answers still work, and the next UTC day has a new quota.
    assert availability_check_address(workspace=acme, address="+14155550130", now=NOON).from_cache
    tomorrow = NOON + timedelta(days=1)
    assert availability_check_address(workspace=acme, address="+14155550134", now=tomorrow)


def test_round_robin_across_two_lines(acme, relay, make_line):
    with RelaySimulator(password=PASSWORD) as other:
        first = make_line(acme)
        second = make_line(acme, simulator=other)
        used = [
            availability_check_address(
                workspace=acme, address=f"+1415555010{i}", now=NOON + timedelta(seconds=i)
            ).line_id
            for i in range(6)
        ]
        assert used == [first.pk, second.pk] * 3
        assert availability_requests(relay) == availability_requests(other) == 3


def test_a_down_line_is_skipped(acme, relay, make_line):
    with RelaySimulator(password=PASSWORD) as other:
        down = make_line(acme, simulator=other)
        Line.objects.filter(pk=down.pk).update(health_status=Line.Health.DOWN)
        up = make_line(acme)
        for i in range(3):
            result = availability_check_address(workspace=acme, address=f"+1415555010{i}", now=NOON)
            assert result.line_id == up.pk
        assert availability_requests(other) == 0


def test_every_line_down_is_an_error_without_quota(acme, relay, make_line):
    line = make_line(acme)
    Line.objects.filter(pk=line.pk).update(health_status=Line.Health.DOWN)
    result = availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    assert (result.available, result.status) == (None, "error")
    assert checks_today(line) == 0


def test_the_sync_path_waits_out_the_gap(acme, relay, make_line, monkeypatch):
    slept = []
    monkeypatch.setattr(availability, "_sleep", slept.append)
    line = make_line(acme, check_gap_seconds=3)
    availability_check_address(workspace=acme, address="+14155550130", now=NOON)
    result = availability_check_address(
        workspace=acme, address="+14155550132", now=NOON + timedelta(seconds=1)
    )
    assert result.available is True
    assert slept == [pytest.approx(2.0)]
    line.refresh_from_db()
    assert line.last_check_at == NOON + timedelta(seconds=3)


def test_background_callers_get_the_wait_instead_of_sleeping(acme, relay, make_line):
    make_line(acme, check_gap_seconds=3)
    availability_check_address(workspace=acme, address="+14155550130", now=NOON)
    with pytest.raises(availability.LinesBusy) as caught:
        availability_check_address(
            workspace=acme, address="+14155550132", now=NOON + timedelta(seconds=1), wait=False
        )
    assert caught.value.retry_after == pytest.approx(2.0)


# Faults


def test_unreachable_relay_is_an_error_and_burns_no_quota(acme):
    line = line_create(
        workspace=acme, server_url="http://127.0.0.1:9", relay_password="x", check_gap_seconds=0
    )
    result = availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    assert (result.status, result.available, result.line_id) == ("error", None, line.pk)
    assert "reach" in result.detail
    assert checks_today(line) == 0
    line.refresh_from_db()
    assert line.health_consecutive_failures == 1
    assert not AvailabilityCacheEntry.objects.exists()
    availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    line.refresh_from_db()
    assert line.health_status == "down"


def test_a_wrong_password_is_an_error_and_marks_the_line(acme, relay, make_line):
    line = make_line(acme, relay_password="wrong")
    result = availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    assert result.status == "error"
    assert "password" in result.detail
    line.refresh_from_db()
    assert line.health_consecutive_failures == 1
    assert checks_today(line) == 1  # the request reached the relay


def test_a_slow_relay_times_out_into_an_error(acme, relay, make_line):
    line = make_line(acme)
    relay.configure(latency=1.0)
    client = get_client(line)
    client.timeout = (1, 0.2)
    result = availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    assert result.status == "error"
    assert "in time" in result.detail
    line.refresh_from_db()
    assert line.health_consecutive_failures == 1


class _Garbage(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def garbage_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_garbage_answer_is_an_error(acme, garbage_server):
    line = line_create(
        workspace=acme, server_url=garbage_server, relay_password="x", check_gap_seconds=0
    )
    result = availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    assert result.status == "error"
    assert "not a relay envelope" in result.detail
    line.refresh_from_db()
    assert line.health_consecutive_failures == 1


def test_an_imessage_error_for_one_address_does_not_hurt_the_line(acme, relay, make_line):
    line = make_line(acme)
    result = availability_check_address(workspace=acme, address="+14155559999", now=NOON)
    assert result.status == "error"
    line.refresh_from_db()
    assert line.health_consecutive_failures == 0
    assert line.health_status == "healthy"


def test_a_failure_then_success_heals_the_line(acme, relay, make_line):
    line = make_line(acme)
    relay.configure(helper_connected=False)
    availability_check_address(workspace=acme, address="+14155550130", now=NOON)
    line.refresh_from_db()
    assert line.health_consecutive_failures == 1
    relay.configure(helper_connected=True)
    availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    line.refresh_from_db()
    assert (line.health_status, line.health_consecutive_failures) == ("healthy", 0)


# Leads


def test_lead_addresses_are_tried_in_order_until_one_is_available(acme, relay, make_line):
    make_line(acme)
    person = lead(
        acme,
        phone="+14155550131",
        email="p@example.com",
        alt_phone1="+14155550133",
        alt_email1="p@icloud.com",
        alt_email2="p@me.com",
    )
    result = availability_check_lead(workspace=acme, lead=person, now=NOON)
    assert result.status == "available"
    assert result.address == "p@icloud.com"
    assert result.checked_addresses == (
        "+14155550131", "p@example.com", "+14155550133", "p@icloud.com",
    )  # fmt: skip
    person.refresh_from_db()
    assert person.availability_status == "available"
    assert person.availability_checked_at == NOON
    assert person.availability_address == "p@icloud.com"
    assert availability_requests(relay) == 4


def test_a_lead_with_no_available_address_is_unavailable(acme, relay, make_line):
    make_line(acme)
    person = lead(acme, phone="+14155550131", email="p@example.com")
    result = availability_check_lead(workspace=acme, lead=person, now=NOON)
    assert (result.status, result.available) == ("unavailable", False)
    person.refresh_from_db()
    assert person.availability_status == "unavailable"


def test_a_relay_failure_makes_the_lead_error(acme, relay, make_line):
    make_line(acme)
    person = lead(acme, phone="+14155559999", email="p@example.com")
    result = availability_check_lead(workspace=acme, lead=person, now=NOON)
    assert result.status == "error"
    person.refresh_from_db()
    assert person.availability_status == "error"


def test_no_active_line_is_written_to_the_lead(acme):
    person = lead(acme, phone="+14155550132")
    with pytest.raises(NoActiveLine):
        availability_check_lead(workspace=acme, lead=person, now=NOON)
    person.refresh_from_db()
    assert person.availability_status == "no_active_line"


def test_quota_exhaustion_leaves_the_lead_untouched(acme, relay, make_line):
    make_line(acme, daily_availability_checks_limit=0)
    person = lead(acme, phone="+14155550132", availability_status="unavailable")
    with pytest.raises(AvailabilityQuotaExhausted):
        availability_check_lead(workspace=acme, lead=person, now=NOON)
    person.refresh_from_db()
    assert person.availability_status == "unavailable"


@pytest.mark.django_db(transaction=True)
def test_results_are_announced_inside_the_writing_transaction(acme, relay, make_line):
    make_line(acme)
    person = lead(acme, phone="+14155550132")
    seen = []

    def receiver(sender, workspace, results, **kwargs):
        seen.append(
            (
                connection.in_atomic_block,
                Lead.objects.get(pk=person.pk).availability_status,
                [(r.lead_id, r.status) for r in results],
            )
        )

    lead_availability_updated.connect(receiver)
    try:
        availability_check_lead(workspace=acme, lead=person, now=NOON)
    finally:
        lead_availability_updated.disconnect(receiver)
    assert seen == [(True, "available", [(person.pk, "available")])]


def test_cached_leads_are_checked_in_bulk(acme, relay, make_line, django_assert_max_num_queries):
    make_line(acme)
    leads = [lead(acme, phone=f"+1415555{i:04d}") for i in range(100, 160)]
    for person in leads:
        availability_check_address(workspace=acme, address=person.phone, now=NOON)
    with django_assert_max_num_queries(6):
        batch = availability.availability_check_leads(workspace=acme, leads=leads, now=NOON)
    assert batch.stopped is None
    assert [r.status for r in batch.results] == [
        "available" if i % 2 == 0 else "unavailable" for i in range(100, 160)
    ]
    assert Lead.objects.filter(workspace=acme, availability_status="available").count() == 30


def test_a_lead_with_nothing_to_check_is_an_error_not_unavailable(acme, relay, make_line):
    make_line(acme)
    person = lead(acme, phone="12", email="not-an-email")
    result = availability_check_lead(workspace=acme, lead=person, now=NOON)
    assert (result.status, result.available, result.checked_addresses) == ("error", None, ())
    person.refresh_from_db()
    assert person.availability_status == "error"
    assert availability_requests(relay) == 0


def test_a_batch_stopped_halfway_through_a_lead_caches_what_it_got(acme, relay, make_line):
    make_line(acme, check_gap_seconds=3)
    person = lead(acme, phone="+14155550131", email="p@icloud.com")
    batch = availability.availability_check_leads(
        workspace=acme, leads=[person], now=NOON, wait=False
    )
    assert isinstance(batch.stopped, availability.LinesBusy)
    assert batch.results == []
    assert dict(AvailabilityCacheEntry.objects.values_list("address", "available")) == {
        "+14155550131": False
    }
    person.refresh_from_db()
    assert person.availability_status == ""
