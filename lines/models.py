import hashlib
import hmac
import secrets

from django.db import models
from django.utils import timezone

from tuco.crypto import EncryptedTextField
from tuco.fields import BytewiseCharField
from tuco.ids import new_id
from tuco.models import Workspace


def new_webhook_token() -> str:
    return secrets.token_urlsafe(24)


def webhook_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Line(models.Model):
    """A Mac signed in to iMessage, reached through its relay server."""

    class Health(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        HEALTHY = "healthy", "Healthy"
        # Sends go on, with evidence against the line (failures, missing receipts,
        # a canary that did not answer once).
        DEGRADED = "degraded", "Degraded"
        # Taken out of rotation by line safety: the relay answers, but iMessage is
        # proven dead or the spam risk is high. Released after a cool-down once the
        # probes pass, or by an owner.
        QUARANTINED = "quarantined", "Quarantined"
        # Out of rotation while its latest iMessages wait for delivery receipts that
        # its receipts normally beat (lines.safety.line_hold): back as soon as one
        # comes, quarantined when they go undelivered.
        HELD = "held", "Held"
        DOWN = "down", "Down"

    class SafetyAction(models.TextChoices):
        NONE = "", "None"
        CAPS_HALVED = "caps_halved", "Caps halved"
        QUARANTINED = "quarantined", "Quarantined"
        HELD = "held", "Held: awaiting delivery receipts"

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="lines")
    phone = models.CharField(max_length=20, blank=True, default="")
    email = models.CharField(max_length=254, blank=True, default="")
    first_name = models.CharField(max_length=100, blank=True, default="")
    last_name = models.CharField(max_length=100, blank=True, default="")
    server_url = models.URLField(max_length=500)
    relay_password = EncryptedTextField(blank=True, default="")
    is_active = models.BooleanField(default=True)
    provisioning_status = models.CharField(max_length=32, default="active")
    line_type = models.CharField(max_length=16, default="byon")
    daily_new_conversations_limit = models.PositiveIntegerField(default=50)
    daily_total_messages_limit = models.PositiveIntegerField(default=150)
    daily_availability_checks_limit = models.PositiveIntegerField(default=70)
    device_gap_seconds = models.PositiveIntegerField(default=30)
    contact_gap_seconds = models.PositiveIntegerField(default=45)
    check_gap_seconds = models.PositiveIntegerField(default=3)

    health_status = models.CharField(max_length=12, choices=Health, default=Health.UNKNOWN)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    health_consecutive_failures = models.PositiveIntegerField(default=0)
    health_detail = models.CharField(max_length=500, blank=True, default="")

    # Line safety (lines.safety): the evidence beyond the ping, and the automatic
    # action in force with its reason. An address known to be on iMessage, checked
    # with each health check (empty: the LINE_CANARY_ADDRESS setting).
    canary_address = models.CharField(max_length=254, blank=True, default="")
    canary_consecutive_failures = models.PositiveIntegerField(default=0)
    # Sends that failed at the relay or got no delivery receipt, since the last receipt.
    send_consecutive_failures = models.PositiveIntegerField(default=0)
    safety_action = models.CharField(
        max_length=12, choices=SafetyAction, blank=True, default=SafetyAction.NONE
    )
    safety_action_reason = models.CharField(max_length=500, blank=True, default="")
    safety_action_since = models.DateTimeField(null=True, blank=True)
    # Caps halved: until then. Quarantined: the cool-down ends then (released once the
    # probes pass after it).
    safety_action_until = models.DateTimeField(null=True, blank=True)
    # An owner overrode the automatic actions: none is taken on risk until then.
    safety_override_until = models.DateTimeField(null=True, blank=True)

    # Gap bookkeeping, advanced only by conditional updates (see lines.services).
    last_check_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)

    # When the line's current warm-up began (None: not warming). Its new-conversation
    # cap climbs from the workspace's start cap to its own over the warm-up days,
    # counted in UTC days like its usage (see lines.warmup).
    warmup_started_at = models.DateTimeField(null=True, blank=True)

    # Unguessable part of this line's relay callback URL: the relay signs nothing.
    # Kept encrypted (it is needed to register the URL on the relay); callbacks are
    # looked up by its hash, so the database is never searched by the secret itself.
    webhook_token = EncryptedTextField(default=new_webhook_token)
    webhook_token_hash = models.CharField(max_length=64, unique=True)
    # When the relay last confirmed our registration for this line.
    webhook_registered_at = models.DateTimeField(null=True, blank=True)
    last_polled_ms = models.BigIntegerField(default=0)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["workspace", "is_active"], name="line_ws_active")]

    def __str__(self):
        return self.display_name

    def save(self, *args, **kwargs):
        self.webhook_token_hash = webhook_token_hash(self.webhook_token)
        super().save(*args, **kwargs)

    def rotate_webhook_token(self) -> None:
        """A new callback token (saved by the caller, with webhook_token_hash)."""
        self.webhook_token = new_webhook_token()
        self.webhook_token_hash = webhook_token_hash(self.webhook_token)

    def webhook_token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.webhook_token.encode(), token.encode())

    @property
    def display_name(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.phone or self.email or self.server_url

    @property
    def is_usable(self) -> bool:
        return self.is_active and self.health_status not in self.OUT_OF_ROTATION

    OUT_OF_ROTATION = (Health.DOWN, Health.QUARANTINED, Health.HELD)

    def caps_halved(self, now) -> bool:
        return (
            self.safety_action == self.SafetyAction.CAPS_HALVED
            and self.safety_action_until is not None
            and self.safety_action_until > now
        )


class LineActivity(models.Model):
    """What happened on a line in one UTC hour: the evidence behind its spam risk and
    its chart. Counters are raised with relative UPDATEs by lines.safety."""

    line = models.ForeignKey(Line, on_delete=models.CASCADE, related_name="activity_hours")
    hour = models.DateTimeField()
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    undelivered = models.PositiveIntegerField(default=0)
    replies = models.PositiveIntegerField(default=0)

    KINDS = ("sent", "delivered", "failed", "undelivered", "replies")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["line", "hour"], name="lineactivity_unique_hour")
        ]


class LineUsage(models.Model):
    """Per-line, per-UTC-day counters. A new day is a new row, so usage resets at 00:00 UTC."""

    line = models.ForeignKey(Line, on_delete=models.CASCADE, related_name="usage_days")
    date = models.DateField()
    new_conversations_count = models.PositiveIntegerField(default=0)
    total_messages_count = models.PositiveIntegerField(default=0)
    availability_checks_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["line", "date"], name="lineusage_unique_day")
        ]


class LinePolicy(models.Model):
    """A workspace's pacing settings for its lines. A workspace without a row uses the
    global defaults (settings.LINE_WARMUP_START_CAP, LINE_WARMUP_DAYS,
    SEND_GAP_JITTER_PERCENT, SEND_SPREAD_OVER_WINDOW); see lines.warmup and lines.pacing."""

    workspace = models.OneToOneField(
        Workspace, on_delete=models.CASCADE, primary_key=True, related_name="line_policy"
    )
    # New-conversation cap on a warming line's first day.
    warmup_start_cap = models.PositiveIntegerField()
    # Days the cap takes to reach the line's own; 0: lines do not warm up.
    warmup_days = models.PositiveSmallIntegerField()
    # Device and contact gaps vary by up to this share either way (0: exact gaps).
    gap_jitter_percent = models.PositiveSmallIntegerField()
    # Campaign first messages released for a window are spread over it instead of
    # all going at its opening (campaigns.pacing).
    spread_over_window = models.BooleanField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Line policy of {self.workspace}"
