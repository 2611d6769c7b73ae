"""The relay simulator's own behaviour: webhooks, admin endpoints, switches (no database)."""

import argparse
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from lines.relay import BlueBubblesClient, chat_guid_for
from lines.simulator import (
    RelaySimulator,
    add_arguments,
    default_availability,
    from_options,
    load_registry,
    measure_raw_rate,
)

ON_IMESSAGE = "+15551234562"
NOT_ON_IMESSAGE = "+15551234561"


class WebhookRecorder:
    """A tiny HTTP server that keeps every JSON body POSTed to it."""

    def __init__(self):
        self.events: list[dict] = []
        self.changed = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                # Record before answering: the relay posts the next event only after
                # this one is answered, so the list keeps the relay's order.
                with recorder.changed:
                    recorder.events.append(json.loads(body))
                    recorder.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/relay/token"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def sim():
    with RelaySimulator(delivery_delay=0.05) as sim:
        yield sim


@pytest.fixture
def client(sim):
    with BlueBubblesClient(sim.url, "secret", timeout=(2, 10)) as client:
        yield client


@pytest.fixture
def hooks(client):
    recorder = WebhookRecorder()
    client.register_webhook(recorder.url)
    yield recorder
    recorder.close()


def admin(sim, path, payload=None):
    if payload is None:
        return requests.get(f"{sim.url}{path}", timeout=5)
    return requests.post(f"{sim.url}{path}", json=payload, timeout=5)


def test_it_emits_new_message_twice_then_delivered(client, hooks):
    sent = client.send_text(address=ON_IMESSAGE, text="Hello", temp_guid="t-1")

    first, second, update = hooks.wait_for(3)
    assert [first["type"], second["type"], update["type"]] == [
        "new-message",
        "new-message",
        "updated-message",
    ]
    assert first["data"]["guid"] == second["data"]["guid"] == sent.guid
    assert first["data"]["tempGuid"] == "t-1"
    assert "tempGuid" not in second["data"]
    assert first["data"]["isFromMe"] is True
    assert first["data"]["chats"][0]["guid"] == chat_guid_for(ON_IMESSAGE)
    assert update["data"]["guid"] == sent.guid
    assert update["data"]["dateDelivered"] >= first["data"]["dateCreated"]
    assert "chats" not in update["data"]
    assert client.get(sent.guid)["isDelivered"] is True


def test_it_emits_a_send_error_for_an_address_not_on_imessage(client, hooks):
    sent = client.send_text(address=NOT_ON_IMESSAGE, text="Hello", temp_guid="t-1")
    assert sent.raw["error"] == 0

    events = hooks.wait_for(3)
    assert events[-1]["type"] == "message-send-error"
    assert events[-1]["data"]["guid"] == sent.guid
    assert events[-1]["data"]["error"] == 22
    assert client.get(sent.guid)["error"] == 22


def test_inbound_emits_a_new_message_and_is_queryable(sim, client, hooks):
    response = admin(sim, "/sim/inbound", {"from": "+15557654321", "text": "STOP"})
    assert response.status_code == 200

    [event] = hooks.wait_for(1)
    data = event["data"]
    assert event["type"] == "new-message"
    assert data["isFromMe"] is False
    assert data["text"] == "STOP"
    assert data["handle"]["address"] == "+15557654321"
    assert data["chats"][0]["guid"] == "iMessage;-;+15557654321"
    assert [m["guid"] for m in client.query_messages(0)] == [data["guid"]]


def test_read_emits_updated_message_with_date_read(sim, client, hooks):
    sent = client.send_text(address=ON_IMESSAGE, text="Hello", temp_guid="t-1")
    hooks.wait_for(3)

    assert admin(sim, "/sim/read", {"guid": sent.guid}).status_code == 200
    update = hooks.wait_for(4)[-1]
    assert update["type"] == "updated-message"
    assert update["data"]["dateRead"] is not None
    assert admin(sim, "/sim/read", {"guid": "unknown"}).status_code == 404


def test_it_drops_webhooks_when_told_to(sim, client, hooks):
    sim.drop_webhooks = True
    client.send_text(address=ON_IMESSAGE, text="Hello", temp_guid="t-1")
    time.sleep(0.3)
    assert hooks.events == []
    assert sim.stats["webhooks"]["dropped"] == 3
    assert len(client.query_messages(0)) == 1


def test_it_only_posts_the_events_a_webhook_asked_for(sim, client, hooks):
    client.register_webhook(hooks.url, ["updated-message"])
    client.send_text(address=ON_IMESSAGE, text="Hello", temp_guid="t-1")
    [event] = hooks.wait_for(1)
    assert event["type"] == "updated-message"


def test_it_counts_a_webhook_receiver_that_is_down(sim, client):
    client.register_webhook("http://127.0.0.1:9/nowhere")
    sim.inbound(ON_IMESSAGE, "hi")
    deadline = time.monotonic() + 5
    while "failed" not in sim.stats["webhooks"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.stats["webhooks"]["failed"] == 1


@pytest.mark.parametrize(
    "address, verdict",
    [
        ("+15551234562", True),
        ("+15551234563", False),
        ("+44 20 7946 0018", True),
        ("+15551239999", "error"),
        ("friend@icloud.com", True),
        ("friend@gmail.com", False),
        ("ERROR@gmail.com", "error"),
        ("not an address", False),
    ],
)
def test_the_default_registry(address, verdict):
    assert default_availability(address) == verdict


def test_registry_overrides_win(client, sim):
    sim.registry.update({ON_IMESSAGE: False})
    assert client.check(ON_IMESSAGE) is False

    response = admin(sim, "/sim/config", {"registry": {NOT_ON_IMESSAGE: True}})
    assert response.status_code == 200
    assert client.check(NOT_ON_IMESSAGE) is True


def test_it_loads_a_registry_file(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"+15551230001": True, "x@gmail.com": "error"}))
    with RelaySimulator(registry=load_registry(path)) as sim:
        assert sim.availability_of("+15551230001") is True
        assert sim.availability_of("x@gmail.com") == "error"

    path.write_text(json.dumps({"+15551230001": "maybe"}))
    with pytest.raises(ValueError):
        load_registry(path)


def test_config_changes_switches_and_rejects_bad_values(sim, client):
    response = admin(sim, "/sim/config", {"helper_connected": False, "latency": 0.01})
    assert response.status_code == 200
    assert response.json()["data"]["helper_connected"] is False
    assert not client.health().healthy

    for bad in ({"no_such_switch": 1}, {"latency": -1}, {"false_negative_rate": 2}):
        response = admin(sim, "/sim/config", bad)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "Validation Error"


def test_false_negative_rate_answers_false_for_available_addresses(sim, client):
    sim.false_negative_rate = 1.0
    assert client.check(ON_IMESSAGE) is False
    sim.false_negative_rate = 0.0
    assert client.check(ON_IMESSAGE) is True


@pytest.mark.parametrize("key", ["password", "guid", "token"])
def test_it_accepts_the_password_under_each_alias(sim, key):
    response = requests.get(f"{sim.url}/api/v1/ping", params={key: "secret"}, timeout=5)
    assert response.json() == {"status": 200, "message": "Ping received!", "data": "pong"}


def test_it_answers_401_without_the_password(sim):
    response = requests.get(f"{sim.url}/api/v1/ping", timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "Authentication Error"


@pytest.mark.parametrize(
    "body, detail",
    [
        (b"{not json", "not valid JSON"),
        (b'{"chatGuid": "iMessage;-;+15551234562", "message": "hi"}', "tempGuid"),
        (b'{"chatGuid": "iMessage;-;+15551234562", "tempGuid": "t"}', "message"),
        (b'{"tempGuid": "t", "message": "hi"}', "chatGuid"),
    ],
)
def test_it_validates_send_bodies(sim, body, detail):
    response = requests.post(
        f"{sim.url}/api/v1/message/text",
        params={"password": "secret"},
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400
    assert detail in response.json()["error"]["message"]
    assert sim.sent == []


def test_it_keeps_connections_alive_with_exact_lengths(sim):
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        for path in ("/api/v1/ping?password=secret", "/api/v1/nope?password=secret"):
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            assert int(response.headers["Content-Length"]) == len(body)
            assert not response.will_close
    finally:
        connection.close()
    assert sim.stats["connections"] == 1


def test_stats_count_requests_by_endpoint(sim, client):
    client.check(ON_IMESSAGE)
    client.check(NOT_ON_IMESSAGE)
    client.health()
    stats = admin(sim, "/sim/stats").json()["data"]
    assert stats["by_endpoint"]["availability"] == 2
    assert stats["by_endpoint"]["ping"] == 1
    # A "no" is believed once the account is seen signed in: one server/info more.
    assert stats["by_endpoint"]["server_info"] == 2
    assert stats["total"] == 6  # the stats request counts itself
    assert admin(sim, "/sim/reset", {}).status_code == 200
    assert sim.stats["total"] == 0


def test_measure_raw_rate_reports_requests_per_second(sim):
    assert measure_raw_rate(sim.url, "secret", n=50, concurrency=4) > 0
    assert sim.stats["by_endpoint"]["availability"] == 50


def test_command_line_options_build_a_simulator(tmp_path):
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"+15550000001": True}))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = vars(
        parser.parse_args(
            ["--port", "0", "--helper-disconnected", "--registry", str(registry)]
            + ["--throttle-per-hour", "5", "--drop-webhooks", "--latency", "0.1"]
        )
    )
    sim = from_options(options)
    assert sim.helper_connected is False
    assert sim.throttle_per_hour == 5
    assert sim.drop_webhooks is True
    assert sim.latency == 0.1
    assert sim.availability_of("+15550000001") is True
