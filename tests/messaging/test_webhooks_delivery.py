import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from leads.models import Lead
from messaging import webhook_delivery, webhooks
from messaging.delivery import BlockedTarget, _check_peer, is_public_ip, post_signed
from messaging.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from messaging.signals import campaign_names_requested
from messaging.tasks import webhook_deliver_due
from tests.messaging.conftest import verify_signature


@pytest.fixture
def lead(acme):
    return Lead.objects.create(workspace=acme, first_name="Lee", phone="+14155550002")


def emit(workspace, lead, capture, event="message.reply", **kwargs):
    with capture(execute=True), transaction.atomic():
        return webhooks.event_emit(
            workspace=workspace, event=event, lead=lead, message_id="m1", text="hi", **kwargs
        )


def test_an_event_is_delivered_signed_after_commit(
    acme, lead, make_endpoint, receiver, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(acme, receiver.url, events=["message.reply"])
    ids = emit(acme, lead, django_capture_on_commit_callbacks, data={"reply": {"x": 1}})
    assert len(ids) == 1
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert verify_signature(endpoint.secret, request)
    assert request["headers"]["webhook-id"] == ids[0]
    assert request["headers"]["X-Tuco-Event"] == "message.reply"
    assert request["headers"]["X-Tuco-Timestamp"].endswith("Z")
    body = receiver.events()[0]
    assert set(body) == {
        "event",
        "timestamp",
        "workspaceId",
        "messageId",
        "message",
        "leadId",
        "lead",
        "contactOwnerEmail",
        "campaignId",
        "campaignName",
        "ghlContactId",
        "ghlLocationId",
        "hsPortalId",
        "hsContactId",
        "data",
    }
    assert body["leadId"] == lead.pk
    assert body["lead"]["phone"] == "+14155550002"
    assert body["contactOwnerEmail"] == "alice@acme.test"
    assert body["data"] == {"reply": {"x": 1}}
    delivery = WebhookDelivery.objects.get(pk=ids[0])
    assert delivery.status == "delivered"
    assert delivery.attempts == 1


def test_nothing_is_written_for_unsubscribed_or_inactive_endpoints(
    acme, lead, make_endpoint, receiver, django_capture_on_commit_callbacks
):
    make_endpoint(acme, receiver.url, events=["message.sent"])
    inactive = make_endpoint(acme, receiver.url, events=["message.reply"])
    WebhookEndpoint.objects.filter(pk=inactive.pk).update(is_active=False)
    assert emit(acme, lead, django_capture_on_commit_callbacks) == []
    assert receiver.requests == []


def test_a_rolled_back_change_sends_nothing(acme, lead, make_endpoint, receiver):
    make_endpoint(acme, receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        webhooks.event_emit(workspace=acme, event="message.reply", lead=lead)
        raise RuntimeError
    assert not WebhookDelivery.objects.exists()
    assert receiver.requests == []


def test_campaign_names_come_from_the_receivers_of_the_signal(
    acme, lead, make_endpoint, receiver, django_capture_on_commit_callbacks
):
    make_endpoint(acme, receiver.url)

    def names(sender, workspace_id, campaign_ids, **kwargs):
        assert workspace_id == acme.pk
        return {i: f"Name {i}" for i in campaign_ids}

    campaign_names_requested.connect(names)
    try:
        emit(acme, lead, django_capture_on_commit_callbacks, campaign_id="c" * 24)
    finally:
        campaign_names_requested.disconnect(names)
    event = receiver.events()[0]
    assert event["campaignId"] == "c" * 24
    assert event["campaignName"] == f"Name {'c' * 24}"


def test_a_down_receiver_gets_the_event_later_exactly_once(
    acme, lead, make_endpoint, receiver, django_capture_on_commit_callbacks
):
    make_endpoint(acme, receiver.url)
    receiver.status = 503
    [delivery_id] = emit(acme, lead, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == "pending"
    assert delivery.last_status_code == 503
    first_retry = delivery.next_attempt_at
    assert timedelta(seconds=4) < first_retry - timezone.now() <= timedelta(seconds=5)

    # Not due yet: the periodic task leaves it alone.
    assert webhook_deliver_due() == 0

    receiver.status = 200
    later = first_retry + timedelta(seconds=1)
    ids = webhook_delivery.webhook_deliveries_claim(now=later)
    assert ids == [delivery_id]
    assert (
        webhook_delivery.webhook_delivery_attempt(delivery_id=delivery_id, now=later) == "delivered"
    )
    # Claimed and delivered: nothing left for another run.
    assert webhook_delivery.webhook_deliveries_claim(now=later + timedelta(days=2)) == []

    ids_seen = [r["headers"]["webhook-id"] for r in receiver.requests]
    assert ids_seen == [delivery_id, delivery_id]
    assert [r.status_code for r in WebhookAttempt.objects.filter(delivery_id=delivery_id)] == [
        503,
        200,
    ]
    assert [e["event"] for e in receiver.events()] == ["message.reply", "message.reply"]
    assert len({r["body"] for r in receiver.requests}) == 1


def test_it_follows_the_retry_schedule_then_gives_up(
    acme, lead, make_endpoint, receiver, django_capture_on_commit_callbacks
):
    make_endpoint(acme, receiver.url)
    receiver.status = 500
    [delivery_id] = emit(acme, lead, django_capture_on_commit_callbacks)
    delays = []
    now = timezone.now()
    for _ in webhook_delivery.RETRY_SCHEDULE:
        delivery = WebhookDelivery.objects.get(pk=delivery_id)
        delays.append(round((delivery.next_attempt_at - now).total_seconds()))
        now = delivery.next_attempt_at
        assert webhook_delivery.webhook_deliveries_claim(now=now) == [delivery_id]
        webhook_delivery.webhook_delivery_attempt(delivery_id=delivery_id, now=now)
    assert delays[1:] == list(webhook_delivery.RETRY_SCHEDULE[1:])
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == "failed"
    assert delivery.attempts == webhook_delivery.MAX_ATTEMPTS == 8
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 8


def test_410_disables_the_endpoint(
    acme, lead, make_endpoint, receiver, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(acme, receiver.url)
    receiver.status = 410
    [delivery_id] = emit(acme, lead, django_capture_on_commit_callbacks)
    endpoint.refresh_from_db()
    assert endpoint.is_active is False
    assert "410" in endpoint.disabled_reason
    assert WebhookDelivery.objects.get(pk=delivery_id).status == "failed"
    # A disabled endpoint receives nothing more.
    assert emit(acme, lead, django_capture_on_commit_callbacks) == []
    assert len(receiver.requests) == 1


def test_pending_deliveries_of_a_disabled_endpoint_are_cancelled(
    acme, lead, make_endpoint, receiver
):
    endpoint = make_endpoint(acme, receiver.url)
    with transaction.atomic():
        [delivery_id] = webhooks.event_emit(workspace=acme, event="message.reply", lead=lead)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False)
    assert webhook_deliver_due() == 1
    assert WebhookDelivery.objects.get(pk=delivery_id).status == "cancelled"
    assert receiver.requests == []


def test_delivery_refuses_a_private_address_at_connect_time(acme, lead, receiver, settings):
    """DNS rebinding: the URL was accepted, but the socket ends up on a private address."""
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
    outcome = post_signed(
        url=receiver.url,
        secret=webhooks.WebhookEndpoint().secret,
        webhook_id="w1",
        event="message.reply",
        payload={"event": "message.reply"},
    )
    assert outcome.status_code is None
    assert "non-public address 127.0.0.1" in outcome.error
    assert receiver.requests == []


def test_an_unreachable_receiver_is_recorded_and_retried(acme, lead, make_endpoint):
    with socket_closed_port() as port:
        make_endpoint(acme, f"http://127.0.0.1:{port}/hook")
        with transaction.atomic():
            [delivery_id] = webhooks.event_emit(workspace=acme, event="message.reply", lead=lead)
        assert webhook_deliver_due() == 1
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == "pending"
    assert delivery.last_status_code is None
    assert delivery.last_error.startswith("Connection failed")


class socket_closed_port:  # noqa: N801
    def __enter__(self):
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        return self.port

    def __exit__(self, *exc):
        return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.IS_POSTGRES, reason="SKIP LOCKED needs Postgres")
def test_two_workers_never_claim_the_same_delivery(acme, lead, make_endpoint, receiver):
    endpoint = make_endpoint(acme, receiver.url)
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(workspace=acme, endpoint=endpoint, event="message.reply", payload={})
        for _ in range(40)
    )
    claimed: list[list[str]] = []
    barrier = threading.Barrier(4)

    def worker():
        barrier.wait()
        try:
            claimed.append(webhook_delivery.webhook_deliveries_claim(limit=15))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [i for batch in claimed for i in batch]
    assert len(flat) == len(set(flat)) == 40
    assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {1}


def test_a_failed_delivery_can_be_resent_with_the_same_id(
    acme, lead, make_endpoint, receiver, django_capture_on_commit_callbacks
):
    make_endpoint(acme, receiver.url)
    receiver.status = 500
    [delivery_id] = emit(acme, lead, django_capture_on_commit_callbacks)
    WebhookDelivery.objects.filter(pk=delivery_id).update(status="failed")
    receiver.status = 200
    with django_capture_on_commit_callbacks(execute=True):
        webhook_delivery.webhook_delivery_resend(delivery_id=delivery_id)
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == "delivered"
    assert [r["headers"]["webhook-id"] for r in receiver.requests] == [delivery_id] * 2


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("64:ff9b::a00:1", False),  # 10.0.0.1
        ("64:ff9b::c0a8:10a", False),  # 192.168.1.10
        ("64:ff9b::7f00:1", False),  # 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # 169.254.169.254
        ("64:ff9b::e000:1", False),  # 224.0.0.1, multicast
        ("64:ff9b:1::a00:1", False),  # local-use NAT64 prefix
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("2002:a00:1::1", False),  # 10.0.0.1
        ("2002:ac10:1::", False),  # 172.16.0.1
        ("2002:7f00:1::1", False),  # 127.0.0.1
        ("2002:a9fe:a9fe::", False),  # 169.254.169.254
        ("::ffff:10.0.0.1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("::127.0.0.1", False),  # IPv4-compatible
        ("::10.0.0.1", False),
        ("::169.254.169.254", False),
        ("::8.8.8.8", True),
        ("::ffff:0:10.0.0.1", False),  # IPv4-translated
        ("::ffff:0:8.8.8.8", True),
        ("::", False),
        ("::1", False),
        ("2606:4700:4700::1111", True),
        ("8.8.8.8", True),
        ("10.0.0.1", False),
    ],
)
def test_ipv6_addresses_carrying_an_ipv4_address_are_judged_by_it(address, public):
    assert is_public_ip(address) is public


def test_delivery_refuses_a_nat64_peer_of_a_private_address(monkeypatch):
    """The connect-time check applies the same rule to the socket's peer."""

    class Peer:
        closed = False

        def getpeername(self):
            return ("64:ff9b::a00:1", 443, 0, 0)

        def close(self):
            self.closed = True

    peer = Peer()
    with pytest.raises(BlockedTarget, match="non-public address 64:ff9b::a00:1"):
        _check_peer(peer)
    assert peer.closed
