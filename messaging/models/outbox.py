import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone as dj_timezone

from leads.models import Lead
from lines.models import Line
from tuco.crypto import EncryptedTextField
from tuco.fields import BytewiseCharField
from tuco.ids import new_id
from tuco.models import Workspace

OPTED_OUT_REASON = "Recipient opted out"
REPLIED_REASON = "The lead replied"


class Message(models.Model):
    """One outgoing message: the outbox row the whole send pipeline works on."""

    class Type(models.TextChoices):
        IMESSAGE = "imessage", "iMessage"
        SMS = "sms", "SMS"
        EMAIL = "email", "Email"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        FAILED = "failed", "Failed"
        FALLBACK = "fallback", "Fallback"
        CANCELLED = "cancelled", "Cancelled"

    # The outcome transitions, as the statuses each one may be entered from. Status
    # only moves forward, and more narrowly: failed / fallback only while the
    # recipient does not have the message yet (up to `sent`: a relay may report a send
    # error after accepting it); cancelled only while waiting; delivered and read are
    # never left. Retries and re-queues (sending -> scheduled / pending, failed ->
    # scheduled for retry_failed) are done by their owners with their own guards.
    ENTERED_FROM = {
        "sent": ("pending", "scheduled", "sending"),
        # A delivery receipt is stronger evidence than a send error reported before
        # it (a relay can report both for one message): it moves a failed row on.
        "delivered": ("pending", "scheduled", "sending", "sent", "failed"),
        "read": ("pending", "scheduled", "sending", "sent", "delivered", "failed"),
        "failed": ("pending", "scheduled", "sending", "sent"),
        "fallback": ("pending", "scheduled", "sending", "sent"),
        "cancelled": ("pending", "scheduled"),
    }
    WAITING = ("pending", "scheduled")
    FINAL = ("read", "failed", "fallback", "cancelled")

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    # Indexed by the composite indexes they lead (see Meta), as is campaign_id.
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    lead = models.ForeignKey(
        Lead,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
        db_index=False,
    )
    # The line asked for (fromLineId) or assigned by the dispatcher.
    line = models.ForeignKey(
        Line,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
        db_index=False,
    )
    line_pinned = models.BooleanField(default=False, help_text="fromLineId was given")
    message_type = models.CharField(max_length=8, choices=Type, default=Type.IMESSAGE)
    body = models.TextField(blank=True, default="")
    subject = models.CharField(max_length=300, blank=True, default="")
    attachment_urls = models.JSONField(default=list, blank=True)
    # Display names given with them (attachmentNames), in the same order.
    attachment_names = models.JSONField(default=list, blank=True)
    recipient_phone = models.CharField(max_length=20, blank=True, default="")
    recipient_email = models.CharField(max_length=254, blank=True, default="")
    recipient_name = models.CharField(max_length=200, blank=True, default="")

    # Campaign linkage is plain data: messaging knows nothing about campaigns.
    campaign_id = models.CharField(max_length=24, blank=True, default="")
    step_index = models.PositiveSmallIntegerField(null=True, blank=True)
    batch_id = models.CharField(max_length=100, blank=True, default="")
    stop_on_reply = models.BooleanField(default=False)
    sms_fallback_text = models.TextField(blank=True, default="")
    # The CRM records the sender named (GoHighLevel, HubSpot): echoed in the API's
    # answers and in this message's webhook events, so automations can find their own.
    ghl_contact_id = models.CharField(max_length=100, blank=True, default="")
    ghl_location_id = models.CharField(max_length=100, blank=True, default="")
    hs_contact_id = models.CharField(max_length=100, blank=True, default="")
    hs_portal_id = models.CharField(max_length=100, blank=True, default="")
    # Who wrote it: the signed-in user, or the user who created the API key it came
    # with (`createdByUserId`).
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    status = models.CharField(max_length=10, choices=Status, default=Status.PENDING)
    # A waiting row its owner keeps back (a campaign holds each step until its turn):
    # the dispatcher never claims it, whatever its due_at, and the due index leaves
    # it out, so writing held rows in bulk costs that index nothing. Only the owner
    # lets it go, with a conditional update that still requires it held. It means
    # nothing once the row has left the waiting statuses.
    held = models.BooleanField(default=False)
    scheduled_date = models.DateTimeField(null=True, blank=True)
    # When the dispatcher should next look at the row (scheduled time, retry or
    # the next moment a pre-send check can pass).
    due_at = models.DateTimeField(default=dj_timezone.now)
    # Waiting its turn for a line of its workspace (every line that could take it was
    # in its device gap): the dispatcher places each such row one gap's share after
    # the last one queued, so one comes due each time a line frees up.
    queued_for_line = models.BooleanField(default=False)
    timezone = models.CharField(max_length=64, blank=True, default="")
    send_window_start = models.CharField(max_length=5, blank=True, default="")
    send_window_end = models.CharField(max_length=5, blank=True, default="")
    allowed_days = models.JSONField(default=list, blank=True)
    send_fallback_sms_on_failed = models.BooleanField(default=False)

    attempts = models.PositiveSmallIntegerField(default=0)
    error_message = models.TextField(blank=True, default="")
    cancel_reason = models.CharField(max_length=200, blank=True, default="")
    # Why the dispatcher holds this waiting row back until `scheduled_date` ("" when
    # nothing does): a limit the recipient has reached, such as the frequency cap.
    hold_reason = models.CharField(max_length=200, blank=True, default="")
    # Our id for the send, given to the relay as tempGuid so a send interrupted
    # half-way can be looked up instead of blindly repeated.
    temp_guid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    external_message_id = models.CharField(max_length=100, blank=True, default="")
    sent_address = models.CharField(max_length=254, blank=True, default="")
    rendered_body = models.TextField(blank=True, default="")
    checked_addresses = models.JSONField(default=list, blank=True)
    is_new_conversation = models.BooleanField(default=False)
    fallback_sms_sid = models.CharField(max_length=64, blank=True, default="")
    # "" (none yet), "sending", "sent", "failed", "skipped": claimed with a
    # conditional update so a fallback SMS goes out at most once.
    fallback_sms_status = models.CharField(max_length=8, blank=True, default="")

    # When the line's daily counters were taken for this send (None: nothing is
    # held). Released with the same day when the send never reached the relay.
    usage_taken_at = models.DateTimeField(null=True, blank=True)
    # Set once, by a conditional update, by the one task run allowed to send this
    # row; a second delivery of the same task finds it set and does nothing.
    send_claimed_at = models.DateTimeField(null=True, blank=True)
    # Set right before the channel is called: a row stuck in `sending` with this
    # set may have been sent and is reconciled with the relay, never resent blindly.
    channel_called_at = models.DateTimeField(null=True, blank=True)
    # Until when the row's `sending` is held by whoever has it: the dispatcher's
    # queued send task, then the run that claimed it, which renews it while it lives
    # (messaging.sending.LeaseKeeper). Past it, the sweeper takes the row back.
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    sending_started_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # An iMessage still without a delivery receipt UNDELIVERED_AFTER_MINUTES after it
    # was sent (set once by messaging.safety; a late receipt still moves it on).
    undelivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=dj_timezone.now)
    updated_at = models.DateTimeField(default=dj_timezone.now)

    class Meta:
        # Every index is paid for on each insert (a campaign writes a row per lead and
        # step at once), so each one serves a query, and the partial ones leave out
        # the rows their queries never look for: the dispatcher's due rows (not the
        # held ones), relay ids (set once sent), rows that went out (sweeper,
        # duplicate guard). Plain btree indexes, as the varchar_pattern_ops copies
        # Django adds to indexed CharFields serve only LIKE 'prefix%' lookups.
        indexes = [
            models.Index(
                fields=["due_at"],
                name="message_due_waiting",
                condition=Q(status__in=["pending", "scheduled"], held=False),
            ),
            models.Index(
                fields=["workspace", "due_at"],
                name="message_line_queue",
                condition=Q(status__in=["pending", "scheduled"], queued_for_line=True),
            ),
            models.Index(fields=["workspace", "-created_at"], name="message_ws_created"),
            models.Index(fields=["lead", "-created_at"], name="message_lead_created"),
            models.Index(fields=["campaign_id", "status"], name="message_campaign_status"),
            models.Index(fields=["line"], name="message_line"),
            models.Index(
                fields=["external_message_id"],
                name="message_external_id",
                condition=~Q(external_message_id=""),
            ),
            models.Index(
                fields=["status", "sending_started_at"],
                name="message_status_inflight",
                condition=Q(sending_started_at__isnull=False),
            ),
        ]

    def __str__(self):
        return (
            f"{self.message_type} to {self.recipient_phone or self.recipient_email} ({self.status})"
        )

    @classmethod
    def can_move(cls, old: str, new: str) -> bool:
        return old in cls.ENTERED_FROM.get(new, ())

    def lead_stop_reason(self) -> str:
        """Why this message must not go out any more, judged from its lead as loaded
        ("" when it may): the lead opted out, or, for a stop-on-reply message, replied
        after the message was written. A campaign writes its step messages when the
        lead enrolls, so `created_at` is the enrollment time there."""
        lead = self.lead
        if lead is None:
            return ""
        if lead.opted_out:
            return OPTED_OUT_REASON
        if self.stop_on_reply and lead.replied_at and lead.replied_at >= self.created_at:
            return REPLIED_REASON
        return ""


class Conversation(models.Model):
    """One thread per recipient address in a workspace, on the line that last talked to it."""

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    address = models.CharField(max_length=254)
    lead = models.ForeignKey(
        Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    line = models.ForeignKey(
        Line, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    chat_guid = models.CharField(max_length=300, blank=True, default="")
    unread_count = models.PositiveIntegerField(default=0)
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_message_text = models.TextField(blank=True, default="")
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=dj_timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "address"], name="conversation_unique")
        ]
        indexes = [models.Index(fields=["workspace", "-last_message_at"], name="conv_ws_last")]


class FallbackConfig(models.Model):
    """A workspace's Twilio settings for SMS and fallback SMS."""

    workspace = models.OneToOneField(
        Workspace, on_delete=models.CASCADE, primary_key=True, related_name="fallback_config"
    )
    enabled = models.BooleanField(default=False)
    twilio_account_sid = models.CharField(max_length=64, blank=True, default="")
    twilio_auth_token = EncryptedTextField(blank=True, default="")
    twilio_from_number = models.CharField(max_length=20, blank=True, default="")
    send_fallback_sms_on_failed = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    @property
    def is_configured(self) -> bool:
        return bool(
            self.enabled
            and self.twilio_account_sid
            and self.twilio_auth_token
            and self.twilio_from_number
        )


class RecipientGate(models.Model):
    """Per-recipient send bookkeeping for the dispatcher: the contact gap and the
    double-send guard. The dispatcher locks this row (one per workspace and
    address) while it decides, so two dispatchers cannot both pass a recipient."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    address = models.CharField(max_length=254)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_line = models.ForeignKey(
        Line, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "address"], name="recipientgate_unique")
        ]
