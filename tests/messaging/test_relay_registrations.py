"""Our webhook registrations on the relays, against the simulator: one per active
line, none for lines deleted, deactivated or moved elsewhere, and other parties'
registrations left alone."""

from types import SimpleNamespace

import pytest

from lines.relay import get_client
from lines.services import line_delete, line_update
from lines.simulator import RelaySimulator
from messaging.inbound import relay_webhook_prefix, relay_webhook_url
from tests.lines.relay_fixtures import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a change's on-commit work (the registration tasks run eagerly)."""

    def run(change, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return change(*args, **kwargs)

    return run


def registrations(simulator) -> list[str]:
    """The URLs the relay holds, one entry per registration."""
    client = get_client(SimpleNamespace(server_url=simulator.url, relay_password=PASSWORD))
    return sorted(hook["url"] for hook in client.list_webhooks())


def urls(*lines) -> list[str]:
    for line in lines:
        line.refresh_from_db()
    return sorted(relay_webhook_url(line) for line in lines)


@pytest.fixture
def other_sim():
    simulator = RelaySimulator(password=PASSWORD).start()
    yield simulator
    simulator.stop()


def test_the_relay_holds_one_registration_per_active_line(
    acme, globex, make_line, sim, other_sim, committed
):
    first = committed(make_line, acme)
    second = committed(make_line, acme)
    third = committed(make_line, globex)
    assert registrations(sim) == urls(first, second, third)

    committed(line_update, workspace=acme, line_id=second.pk, is_active=False)
    assert registrations(sim) == urls(first, third)

    committed(line_delete, workspace=globex, line_id=third.pk)
    assert registrations(sim) == urls(first)

    committed(line_update, workspace=acme, line_id=second.pk, is_active=True)
    assert registrations(sim) == urls(first, second)

    committed(line_update, workspace=acme, line_id=first.pk, server_url=other_sim.url)
    assert registrations(sim) == urls(second)
    assert registrations(other_sim) == urls(first)


def test_a_sync_removes_stale_registrations_of_ours_and_keeps_others(
    acme, make_line, sim, committed
):
    line = committed(make_line, acme)
    client = get_client(line)
    client.register_webhook(f"{relay_webhook_prefix()}a-token-of-a-deleted-line")
    client.register_webhook("https://elsewhere.example/hook")

    committed(line_update, workspace=acme, line_id=line.pk, first_name="Ava")
    assert registrations(sim) == sorted([*urls(line), "https://elsewhere.example/hook"])


def test_a_relay_that_lost_its_registrations_gets_them_back_from_the_poll(
    acme, make_line, sim, committed
):
    from messaging.inbound_tasks import relay_poll_line

    line = committed(make_line, acme)
    client = get_client(line)
    for hook in client.list_webhooks():
        client.delete_webhook(hook["id"])
    relay_poll_line(line.pk)
    assert registrations(sim) == urls(line)


def test_rotating_the_token_moves_the_registration(acme, api, make_line, sim, committed):
    line = committed(make_line, acme)
    other = committed(make_line, acme)
    old_url = relay_webhook_url(line)
    response = committed(api.post, f"/api/lines/{line.pk}/rotate-callback-token")
    assert response.status_code == 200
    assert old_url not in registrations(sim)
    assert registrations(sim) == urls(line, other)


def test_a_new_password_or_relay_gives_the_line_a_new_token(acme, make_line, sim, committed):
    line = committed(make_line, acme)
    token = line.webhook_token
    committed(line_update, workspace=acme, line_id=line.pk, first_name="Ava")
    line.refresh_from_db()
    assert line.webhook_token == token
    committed(line_update, workspace=acme, line_id=line.pk, server_url=sim.url + "/")
    committed(line_update, workspace=acme, line_id=line.pk, relay_password="new-secret")
    line.refresh_from_db()
    assert line.webhook_token != token
