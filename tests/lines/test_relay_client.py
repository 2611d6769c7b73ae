"""BlueBubblesClient against the relay simulator over real HTTP (no database)."""

import logging
import socket
import threading
import time
import traceback
from types import SimpleNamespace

import pytest
import requests
import responses

from lines.relay import (
    BlueBubblesClient,
    RelayError,
    address_from_chat_guid,
    chat_guid_for,
    clear_client_cache,
    get_client,
)
from lines.simulator import RelaySimulator

ON_IMESSAGE = "+15551234562"
NOT_ON_IMESSAGE = "+15551234561"


@pytest.fixture
def sim():
    with RelaySimulator(delivery_delay=0.05) as sim:
        yield sim


@pytest.fixture
def client(sim):
    with BlueBubblesClient(sim.url, "secret", timeout=(2, 10)) as client:
        yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_it_reports_a_healthy_relay(client):
    result = client.health()
    assert result.healthy
    assert result.info["detected_imessage"] == "simulator@icloud.com"


def test_it_reports_unhealthy_when_the_helper_is_disconnected(sim, client):
    sim.helper_connected = False
    result = client.health()
    assert not result.healthy
    assert "helper" in result.detail.lower()
    with pytest.raises(RelayError) as caught:
        client.check(ON_IMESSAGE)
    assert caught.value.status == 500
    assert not caught.value.permanent
    assert "helper" in caught.value.message.lower()


def test_it_reports_unhealthy_when_imessage_is_signed_out(sim, client):
    sim.imessage_signed_in = False
    result = client.health()
    assert not result.healthy
    assert result.info["detected_imessage"] is None


def test_it_reports_an_unreachable_relay_as_unhealthy():
    with BlueBubblesClient(f"http://127.0.0.1:{free_port()}", "secret") as client:
        result = client.health()
    assert not result.healthy
    assert "Could not reach" in result.detail


@pytest.mark.parametrize(
    "address, available",
    [
        ("+15551234562", True),
        ("+15551234560", True),
        ("+15551234561", False),
        ("+15551234567", False),
        ("someone@icloud.com", True),
        ("someone@me.com", True),
        ("someone@MAC.com", True),
        ("someone@gmail.com", False),
    ],
)
def test_it_checks_availability_per_the_registry(client, address, available):
    assert client.check(address) is available


@pytest.mark.parametrize("address", ["+15551239999", "error@example.com"])
def test_it_raises_a_transient_error_when_the_relay_fails(client, address):
    with pytest.raises(RelayError) as caught:
        client.check(address)
    error = caught.value
    assert (error.status, error.permanent, error.reached) == (500, False, True)
    assert error.error_type == "iMessage Error"


def test_it_rejects_a_wrong_password_permanently(sim):
    with BlueBubblesClient(sim.url, "wrong") as client, pytest.raises(RelayError) as caught:
        client.check(ON_IMESSAGE)
    assert caught.value.permanent
    assert caught.value.status == 401
    assert caught.value.error_type == "Authentication Error"


def test_it_marks_a_refused_connection_as_not_reached():
    client = BlueBubblesClient(f"http://127.0.0.1:{free_port()}", "secret")
    with client, pytest.raises(RelayError) as caught:
        client.send_text(address=ON_IMESSAGE, text="hi", temp_guid="t-refused")
    assert not caught.value.reached
    assert not caught.value.permanent
    assert caught.value.status is None


def test_it_marks_a_read_timeout_as_reached_and_transient(sim):
    sim.latency = 0.5
    client = BlueBubblesClient(sim.url, "secret", timeout=(2, 0.1))
    with client, pytest.raises(RelayError) as caught:
        client.send_text(address=ON_IMESSAGE, text="hi", temp_guid="t-slow")
    assert caught.value.reached
    assert not caught.value.permanent


def test_it_opens_a_chat_then_sends_to_the_returned_chat_guid(sim, client):
    first = client.send_text(address=ON_IMESSAGE, text="Hello", temp_guid="t-1")
    assert first.chat_guid == chat_guid_for(ON_IMESSAGE) == f"iMessage;-;{ON_IMESSAGE}"
    assert first.temp_guid == "t-1"
    assert first.guid

    second = client.send_text(chat_guid=first.chat_guid, text="Again", temp_guid="t-2")
    assert second.chat_guid == first.chat_guid
    assert second.guid not in (None, first.guid)
    assert second.raw["isFromMe"] is True
    assert second.raw["error"] == 0
    assert [m["text"] for m in sim.sent] == ["Hello", "Again"]
    assert sim.stats["by_endpoint"] == {"chat_new": 1, "message_text": 1}


def test_it_accepts_any_prefixed_chat_guids(sim, client):
    sim.chat_prefix = "any;-;"
    first = client.send_text(address=ON_IMESSAGE, text="Hello", temp_guid="t-1")
    assert first.chat_guid == f"any;-;{ON_IMESSAGE}"
    assert address_from_chat_guid(first.chat_guid) == ON_IMESSAGE
    second = client.send_text(chat_guid=first.chat_guid, text="Again", temp_guid="t-2")
    assert second.guid


def test_it_reads_both_direct_chat_prefixes():
    assert address_from_chat_guid("iMessage;-;a@icloud.com") == "a@icloud.com"
    assert address_from_chat_guid("any;-;+15551234562") == "+15551234562"
    assert address_from_chat_guid("iMessage;+;chat1234") is None


def test_it_refuses_a_send_without_a_chat_or_address(client):
    with pytest.raises(ValueError):
        client.send_text(text="hi", temp_guid="t")


def test_it_rejects_a_temp_guid_already_in_flight_permanently(sim, client):
    sim.latency = 0.4
    results = {}

    def first_send():
        results["first"] = client.send_text(address=ON_IMESSAGE, text="one", temp_guid="dup")

    thread = threading.Thread(target=first_send)
    thread.start()
    time.sleep(0.15)
    with pytest.raises(RelayError) as caught:
        client.send_text(chat_guid=chat_guid_for(ON_IMESSAGE), text="two", temp_guid="dup")
    thread.join()
    assert caught.value.status == 400
    assert caught.value.permanent
    assert results["first"].guid
    assert len(sim.sent) == 1


def test_it_gets_a_message_and_none_for_an_unknown_guid(client):
    sent = client.send_text(address=ON_IMESSAGE, text="Hello", temp_guid="t-1")
    found = client.get(sent.guid)
    assert found["guid"] == sent.guid
    assert found["text"] == "Hello"
    assert found["chats"][0]["guid"] == sent.chat_guid
    assert client.get("NOT-A-GUID") is None


def test_it_sends_an_attachment(sim, client):
    content = b"\x89PNG\r\n\x1a\n\x00\r\n--binary--\r\n"
    sent = client.send_attachment(
        chat_guid=chat_guid_for(ON_IMESSAGE), filename="card.png", content=content, temp_guid="a1"
    )
    [attachment] = sent.raw["attachments"]
    assert attachment["transferName"] == "card.png"
    assert attachment["mimeType"] == "image/png"
    assert attachment["totalBytes"] == len(content)
    assert sent.temp_guid == "a1"


def test_it_fails_sends_past_the_hourly_throttle(sim, client):
    sim.throttle_per_hour = 2
    chat = chat_guid_for(ON_IMESSAGE)
    client.send_text(chat_guid=chat, text="1", temp_guid="t-1")
    client.send_text(chat_guid=chat, text="2", temp_guid="t-2")
    with pytest.raises(RelayError) as caught:
        client.send_text(chat_guid=chat, text="3", temp_guid="t-3")
    assert caught.value.status == 500
    assert not caught.value.permanent
    assert caught.value.data["error"] > 0
    assert "Message Send Error" in caught.value.message
    assert len(sim.sent) == 2


def test_it_treats_a_relay_transaction_timeout_as_transient(sim, client):
    sim.configure(send_timeout=True, timeout_delay=0.05)
    with pytest.raises(RelayError) as caught:
        client.send_text(address=ON_IMESSAGE, text="hi", temp_guid="t-1")
    assert (caught.value.status, caught.value.permanent) == (504, False)
    assert "Transaction timeout" in caught.value.message
    assert sim.sent == []


@pytest.mark.parametrize(
    "status, body", [(200, "pong, but not JSON"), (502, "<html>Bad gateway</html>"), (200, "[]")]
)
def test_it_treats_a_garbage_answer_as_transient(status, body):
    client = BlueBubblesClient("http://relay.test", "secret")
    with responses.RequestsMock() as mock:
        mock.get("http://relay.test/api/v1/handle/availability/imessage", body=body, status=status)
        with pytest.raises(RelayError) as caught:
            client.check(ON_IMESSAGE)
    client.close()
    assert not caught.value.permanent
    assert caught.value.status == status
    assert caught.value.message == (
        f"Not a relay: the server answered HTTP {status} with a body that is not a relay envelope"
    )


def test_it_repeats_nothing_of_an_answer_that_is_not_a_relays():
    client = BlueBubblesClient("http://internal.test", "secret")
    with responses.RequestsMock() as mock:
        mock.get("http://internal.test/api/v1/ping", body="AWS_SECRET_ACCESS_KEY=abc123")
        health = client.health()
    client.close()
    assert not health.healthy
    assert "AWS_SECRET" not in health.detail and "abc123" not in health.detail
    assert health.detail == (
        "Not a relay: the server answered HTTP 200 with a body that is not a relay envelope"
    )


def test_it_follows_no_redirect():
    client = BlueBubblesClient("http://relay.test", "secret")
    with responses.RequestsMock() as mock:
        mock.get(
            "http://relay.test/api/v1/ping",
            status=302,
            headers={"Location": "http://169.254.169.254/latest/meta-data/"},
        )
        health = client.health()
    client.close()
    assert not health.healthy
    assert health.detail == "Not a relay: the server answered HTTP 302 with a redirect"
    assert "169.254" not in health.detail


def test_it_sends_the_password_as_a_query_parameter():
    client = BlueBubblesClient("http://relay.test/", "s3cret&x")
    with responses.RequestsMock() as mock:
        mock.get(
            "http://relay.test/api/v1/ping",
            json={"status": 200, "message": "Ping received!", "data": "pong"},
            match=[responses.matchers.query_param_matcher({"password": "s3cret&x"})],
        )
        mock.get(
            "http://relay.test/api/v1/server/info",
            json={"status": 200, "data": {"helper_connected": True, "detected_imessage": "x"}},
        )
        assert client.health().healthy
    client.close()


def test_it_queries_sent_and_inbound_messages_after_a_time(sim, client):
    client.send_text(address=ON_IMESSAGE, text="old", temp_guid="t-1")
    time.sleep(0.01)
    after = int(time.time() * 1000)
    client.send_text(address=ON_IMESSAGE, text="new", temp_guid="t-2")
    sim.inbound(ON_IMESSAGE, "a reply")

    found = client.query_messages(after)
    assert [(m["text"], m["isFromMe"]) for m in found] == [("new", True), ("a reply", False)]
    assert found[1]["handle"]["address"] == ON_IMESSAGE
    assert len(client.query_messages(0, limit=1)) == 1


def test_webhooks_are_kept_once_per_url_listed_and_deleted(sim, client):
    first = client.register_webhook("http://tuco.test/hooks/relay/a", ["new-message"])
    again = client.register_webhook("http://tuco.test/hooks/relay/a", ["new-message"])
    client.register_webhook("http://tuco.test/hooks/relay/b", ["new-message"])
    assert first["id"] == again["id"]
    hooks = client.list_webhooks()
    assert sorted(h["url"] for h in hooks) == [
        "http://tuco.test/hooks/relay/a",
        "http://tuco.test/hooks/relay/b",
    ]
    client.delete_webhook(first["id"])
    assert [h["url"] for h in client.list_webhooks()] == ["http://tuco.test/hooks/relay/b"]
    with pytest.raises(RelayError) as caught:
        client.delete_webhook(first["id"])
    assert caught.value.status == 404


def test_it_registers_a_webhook(sim, client):
    client.register_webhook("http://tuco.test/hooks/relay/tok")
    assert sim.webhooks == {
        "http://tuco.test/hooks/relay/tok": [
            "new-message",
            "updated-message",
            "message-send-error",
        ]
    }


def test_it_reuses_one_client_per_url_and_password(sim):
    line = SimpleNamespace(server_url=sim.url + "/", relay_password="secret")
    same = SimpleNamespace(server_url=sim.url, relay_password="secret")
    other = SimpleNamespace(server_url=sim.url, relay_password="changed")
    try:
        assert get_client(line) is get_client(same)
        assert get_client(line) is not get_client(other)
        assert get_client(line).check(ON_IMESSAGE)
    finally:
        clear_client_cache()


def test_it_reuses_pooled_connections(sim, client):
    for _ in range(20):
        client.check(ON_IMESSAGE)
    client.send_text(address=ON_IMESSAGE, text="hi", temp_guid="t-1")
    assert sim.stats["total"] == 21
    assert sim.stats["connections"] == 1


# A password whose URL-encoded form differs from its raw form.
SECRET_PASSWORD = "S3cr3t-Pa55+w/rd&x"
SECRET_FORMS = (SECRET_PASSWORD, "S3cr3t-Pa55%2Bw%2Frd%26x", "S3cr3t-Pa55")


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception reachable from it: causes, contexts, wrapped args."""
    found: list[BaseException] = []
    pending: list = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or any(current is e for e in found):
            continue
        found.append(current)
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
    return found


def assert_no_password(text: str) -> None:
    for form in SECRET_FORMS:
        assert form not in text


def test_a_connection_error_carries_no_password(caplog):
    caplog.set_level(logging.DEBUG)
    client = BlueBubblesClient(f"http://127.0.0.1:{free_port()}", SECRET_PASSWORD)
    with client, pytest.raises(RelayError) as caught:
        client.check(ON_IMESSAGE)

    chain = exception_chain(caught.value)
    assert any(isinstance(e, requests.ConnectionError) for e in chain)
    # The URL is still there for debugging, with the password replaced.
    assert any("password=***" in str(e) for e in chain)
    for exc in chain:
        assert_no_password(str(exc))
        assert_no_password(repr(exc))
        for holder in (getattr(exc, "request", None), exc):
            assert_no_password(str(getattr(holder, "url", "")))
    assert_no_password("".join(traceback.format_exception(caught.value)))
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    for record in caplog.records:
        assert_no_password(record.getMessage())


def test_urllib3_logs_relay_urls_without_the_password(caplog):
    caplog.set_level(logging.DEBUG)
    sim = RelaySimulator(password=SECRET_PASSWORD).start()
    try:
        with BlueBubblesClient(sim.url, SECRET_PASSWORD) as client:
            assert client.check(ON_IMESSAGE) is True
    finally:
        sim.stop()
    requests_logged = [r.getMessage() for r in caplog.records if "/api/v1/handle" in r.getMessage()]
    assert requests_logged
    assert all("password=***" in message for message in requests_logged)
    for record in caplog.records:
        assert_no_password(record.getMessage())
