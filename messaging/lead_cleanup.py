"""What messaging deletes with a lead (the published lead-deletion truth table): the
messages sent to it (one-off, campaign and unibox), the replies it sent, and the
conversations with any of its addresses. The do-not-contact list is not about a
lead and stays; so does the per-address send bookkeeping (RecipientGate), as the
relay delivery cache does in the published product."""

from django.db.models import Q

from leads.models import LeadIdentifier
from messaging.models import Conversation, InboundMessage, Message


def messaging_delete_for_leads(*, workspace, leads) -> None:
    """Delete the messaging data of these leads (a Lead queryset). Runs in the
    transaction that deletes them, before they go (see leads.signals.leads_deleting)."""
    lead_ids = leads.values("pk")
    addresses = LeadIdentifier.objects.filter(lead__in=lead_ids).values("value")
    InboundMessage.objects.filter(workspace=workspace, lead__in=lead_ids).delete()
    Message.objects.filter(workspace=workspace, lead__in=lead_ids).delete()
    Conversation.objects.filter(
        Q(lead__in=lead_ids) | Q(address__in=addresses), workspace=workspace
    ).delete()


def on_leads_deleting(sender, workspace, leads, **kwargs) -> None:
    messaging_delete_for_leads(workspace=workspace, leads=leads)
