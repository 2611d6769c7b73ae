from django.db import transaction

from leads.availability import availability_mark_leads
from leads.services import lead_get_or_create
from messaging.models import WebhookDelivery


def test_availability_updates_write_lead_webhooks_in_the_same_transaction(
    acme, make_endpoint, receiver, django_capture_on_commit_callbacks
):
    make_endpoint(acme, receiver.url, events=["lead.availability_updated"])
    lead = lead_get_or_create(workspace=acme, data={"phone": "+14155550002"})[0]
    with django_capture_on_commit_callbacks(execute=True):
        availability_mark_leads(workspace=acme, lead_ids=[lead.pk], status="no_active_line")
    [event] = receiver.events("lead.availability_updated")
    assert event["leadId"] == lead.pk
    assert event["lead"]["availabilityStatus"] == "no_active_line"
    assert event["data"]["status"] == "no_active_line"
    assert event["data"]["available"] is None


def test_a_rolled_back_availability_update_leaves_no_event(acme, make_endpoint, receiver):
    make_endpoint(acme, receiver.url, events=["lead.availability_updated"])
    lead = lead_get_or_create(workspace=acme, data={"phone": "+14155550002"})[0]
    try:
        with transaction.atomic():
            availability_mark_leads(workspace=acme, lead_ids=[lead.pk], status="no_active_line")
            raise RuntimeError
    except RuntimeError:
        pass
    assert not WebhookDelivery.objects.exists()


def test_no_subscriber_no_rows(acme, make_endpoint, receiver):
    make_endpoint(acme, receiver.url, events=["message.reply"])
    lead = lead_get_or_create(workspace=acme, data={"phone": "+14155550002"})[0]
    availability_mark_leads(workspace=acme, lead_ids=[lead.pk], status="no_active_line")
    assert not WebhookDelivery.objects.exists()
