"""The simulator's line failure modes, switched through POST /sim/config, and recovery."""

import time

import pytest
import requests

from lines.relay import BlueBubblesClient, RelayError
from lines.simulator import SIGNED_OUT_ERROR, RelaySimulator
from tests.lines.test_simulator import WebhookRecorder

ON_IMESSAGE = "+15551234562"


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


def configure(sim, **switches):
    response = requests.post(f"{sim.url}/sim/config", json=switches, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_a_signed_out_mac_answers_but_cannot_send_or_check(sim, client):
    assert configure(sim, imessage_signed_in=False)["imessage_signed_in"] is False

    ping = requests.get(f"{sim.url}/api/v1/ping", params={"password": "secret"}, timeout=5)
    assert ping.json()["data"] == "pong"
    health = client.health()
    assert not health.healthy
    assert health.info.get("detected_imessage") is None
    answer = requests.get(
        f"{sim.url}/api/v1/handle/availability/imessage",
        params={"password": "secret", "address": ON_IMESSAGE},
        timeout=5,
    )
    assert answer.json()["data"] == {"available": False}
    # Our client does not take a signed-out Mac's "no" for an answer.
    with pytest.raises(RelayError, match="not signed in"):
        client.check(ON_IMESSAGE)
    with pytest.raises(RelayError) as caught:
        client.send_text(address=ON_IMESSAGE, text="Hello", temp_guid="t-1")
    assert caught.value.status == 500
    assert "not signed in" in caught.value.message
    assert sim.sent == []

    configure(sim, imessage_signed_in=True)
    assert client.health().healthy
    assert client.check(ON_IMESSAGE) is True
    assert client.send_text(address=ON_IMESSAGE, text="Hello", temp_guid="t-2").guid


def test_the_signed_out_send_error_carries_its_code(sim):
    configure(sim, imessage_signed_in=False)
    response = requests.post(
        f"{sim.url}/api/v1/message/text",
        params={"password": "secret"},
        json={"chatGuid": f"iMessage;-;{ON_IMESSAGE}", "tempGuid": "t-1", "message": "hi"},
        timeout=5,
    )
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["type"] == "iMessage Error"
    assert body["data"]["error"] == SIGNED_OUT_ERROR


def test_silent_undelivered_accepts_sends_and_never_reports_an_outcome(sim, client, hooks):
    configure(sim, silent_undelivered=True, delivery_delay=0.01)
    sent = client.send_text(address=ON_IMESSAGE, text="Hello", temp_guid="t-1")
    assert sent.guid
    assert client.health().healthy

    events = hooks.wait_for(2)
    time.sleep(0.3)  # ten times the delivery delay: nothing more comes
    assert [event["type"] for event in hooks.events] == ["new-message", "new-message"]
    assert events[0]["data"]["guid"] == sent.guid
    assert client.get(sent.guid)["dateDelivered"] is None
    assert client.get(sent.guid)["error"] == 0

    configure(sim, silent_undelivered=False)
    again = client.send_text(address=ON_IMESSAGE, text="Again", temp_guid="t-2")
    delivered = hooks.wait_for(5)[-1]
    assert delivered["type"] == "updated-message"
    assert delivered["data"]["guid"] == again.guid


def test_the_other_switches_still_work_with_the_new_ones(sim, client):
    data = configure(sim, silent_undelivered=True, throttle_per_hour=1, false_negative_rate=1.0)
    assert data["delivery_delay"] == 0.05
    assert client.check(ON_IMESSAGE) is False  # signed in: a "no" is an answer
    client.send_text(address=ON_IMESSAGE, text="one", temp_guid="t-1")
    with pytest.raises(RelayError):
        client.send_text(address=ON_IMESSAGE, text="two", temp_guid="t-2")
    response = requests.post(f"{sim.url}/sim/config", json={"silent_undelivered": "x"}, timeout=5)
    assert response.status_code == 400
