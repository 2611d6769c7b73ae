from django.db import models
from django.db.models import Q
from django.utils import timezone as dj_timezone

from leads.models import Lead
from lines.models import Line
from messaging.models.outbox import Conversation, Message
from tuco.fields import BytewiseCharField
from tuco.ids import new_id
from tuco.models import Workspace


class InboundMessage(models.Model):
    """A message a recipient sent us: a reply over iMessage (relay) or SMS (Twilio)."""

    class Channel(models.TextChoices):
        IMESSAGE = "imessage", "iMessage"
        SMS = "sms", "SMS"

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound"
    )
    lead = models.ForeignKey(
        Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_messages"
    )
    line = models.ForeignKey(
        Line, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Normalized sender: E.164 phone or lowercased email.
    address = models.CharField(max_length=254)
    text = models.TextField(blank=True, default="")
    channel = models.CharField(max_length=8, choices=Channel, default=Channel.IMESSAGE)
    # The relay's message guid or Twilio's MessageSid: the same message reported twice
    # (webhook and poll, or a provider retry) is stored once.
    external_id = models.CharField(max_length=100, blank=True, default="")
    chat_guid = models.CharField(max_length=300, blank=True, default="")
    received_at = models.DateTimeField(default=dj_timezone.now)
    is_read = models.BooleanField(default=False)
    is_opt_out = models.BooleanField(default=False)
    in_reply_to = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    created_at = models.DateTimeField(default=dj_timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "channel", "external_id"],
                condition=~Q(external_id=""),
                name="inbound_unique_external_id",
            )
        ]
        indexes = [
            models.Index(fields=["workspace", "-received_at"], name="inbound_ws_received"),
            models.Index(fields=["lead", "-received_at"], name="inbound_lead_received"),
            models.Index(fields=["conversation", "-received_at"], name="inbound_conv_received"),
        ]

    def __str__(self):
        return f"{self.channel} from {self.address}: {self.text[:40]}"
