import base64
import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone as dj_timezone

from tuco.crypto import EncryptedTextField
from tuco.fields import BytewiseCharField
from tuco.ids import new_id
from tuco.models import Workspace

WEBHOOK_EVENTS = (
    "message.sent",
    "message.delivered",
    "message.failed",
    "message.fallback",
    "message.opened",
    "message.reply",
    "message.undelivered",
    "lead.availability_updated",
    "line.down",
    "line.recovered",
    "line.quarantined",
    "line.spam_risk",
)
LINE_EVENTS = ("line.down", "line.recovered", "line.quarantined", "line.spam_risk")
TEST_EVENT = "webhook.test"
SECRET_PREFIX = "whsec_"


def new_webhook_secret() -> str:
    # The Standard Webhooks secret format: the HMAC key is the base64 part.
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookEndpoint(models.Model):
    """A customer URL that receives signed event notifications."""

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=2000)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    events = models.JSONField(default=list)
    # Needed in clear to sign each delivery, so encrypted rather than hashed.
    secret = EncryptedTextField(default=new_webhook_secret)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True, default="")
    # Delivery health, as the API shows it: the last event attempt, the last success
    # and failure, and the failures since the last success.
    last_triggered_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    failure_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=dj_timezone.now)
    updated_at = models.DateTimeField(default=dj_timezone.now)

    class Meta:
        indexes = [models.Index(fields=["workspace", "is_active"], name="webhook_ws_active")]

    def __str__(self):
        return f"{self.name} ({self.url})"


class WebhookDelivery(models.Model):
    """One event for one endpoint: the outbox row. Its id is the stable `webhook-id`."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Also the lease: a worker that claims the row pushes this forward, so another
    # worker cannot pick it up while the request is in flight.
    next_attempt_at = models.DateTimeField(default=dj_timezone.now)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=dj_timezone.now)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhookdelivery_due",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["endpoint", "-created_at"], name="webhookdelivery_endpoint"),
        ]

    def __str__(self):
        return f"{self.event} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP try of a delivery, kept so every attempt is visible."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField(default=dj_timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    response_body = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["attempted_at", "id"]
        indexes = [
            models.Index(fields=["delivery", "attempted_at"], name="webhookattempt_delivery")
        ]

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
