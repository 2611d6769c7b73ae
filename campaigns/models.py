from datetime import timedelta

from django.db import models
from django.utils import timezone as dj_timezone

from leads.models import Lead, LeadList
from lines.models import Line
from tuco.crypto import EncryptedTextField
from tuco.fields import BytewiseCharField
from tuco.ids import new_id
from tuco.models import Workspace


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"

    class ReplyBehavior(models.TextChoices):
        STOP = "stop", "Stop the sequence"
        CONTINUE = "continue", "Continue the sequence"

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    lead_list = models.ForeignKey(
        LeadList, null=True, blank=True, on_delete=models.SET_NULL, related_name="campaigns"
    )
    status = models.CharField(max_length=10, choices=Status, default=Status.DRAFT)
    # Empty: every line of the workspace.
    lines = models.ManyToManyField(Line, blank=True, related_name="campaigns")

    send_immediately = models.BooleanField(default=True)
    randomize_order = models.BooleanField(default=False)
    timezone = models.CharField(max_length=64, blank=True, default="")
    send_window_start = models.CharField(max_length=5, blank=True, default="")
    send_window_end = models.CharField(max_length=5, blank=True, default="")
    allowed_days = models.JSONField(default=list, blank=True)
    reply_behavior = models.CharField(
        max_length=8, choices=ReplyBehavior, default=ReplyBehavior.STOP
    )

    created_at = models.DateTimeField(default=dj_timezone.now)
    updated_at = models.DateTimeField(default=dj_timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "-created_at"], name="campaign_ws_created"),
            models.Index(fields=["status", "started_at"], name="campaign_status_started"),
        ]

    def __str__(self):
        return self.name

    @property
    def stop_on_reply(self) -> bool:
        return self.reply_behavior == self.ReplyBehavior.STOP


# Steps of branch path j sit at positions PATH_BASE * (j + 1) + i (i = 0, 1, ...), so a
# path step keeps its position, and its messages their step_index, whatever the
# main sequence or the other paths become.
PATH_BASE = 100


class Step(models.Model):
    class Kind(models.TextChoices):
        MESSAGE = "message", "Message"
        BRANCH = "branch", "Branch"

    class DelayUnit(models.TextChoices):
        MINUTES = "minutes", "Minutes"
        HOURS = "hours", "Hours"
        DAYS = "days", "Days"

    # The channels of messaging.Message.Type.
    class MessageType(models.TextChoices):
        IMESSAGE = "imessage", "iMessage"
        SMS = "sms", "SMS"
        EMAIL = "email", "Email"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="steps")
    # 0-based position in the main sequence, or in a branch path (see PATH_BASE); the
    # message's step_index.
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=8, choices=Kind, default=Kind.MESSAGE)
    # A step of a branch path: the branch step and the index of its condition.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="path_steps"
    )
    path = models.PositiveSmallIntegerField(null=True, blank=True)
    # A message step's text ("" for a branch step).
    message = models.TextField(blank=True, default="")
    delay = models.PositiveIntegerField(default=0)
    delay_unit = models.CharField(max_length=8, choices=DelayUnit, default=DelayUnit.DAYS)
    message_type = models.CharField(max_length=8, choices=MessageType, default=MessageType.IMESSAGE)
    sms_fallback_message = models.TextField(blank=True, default="")
    # Rule objects as the API shows them ({id, type, tag?, ...}, campaigns.conditions):
    # judged when the step comes due; one that is true stops the lead's sequence here.
    stop_rules = models.JSONField(default=list, blank=True)
    # A branch step's conditions, one per path, in the order they are tried; the last
    # is `default`.
    branch_conditions = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["campaign", "position"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "position"], name="step_unique_position")
        ]

    def __str__(self):
        return f"{self.campaign} step {self.position + 1}"

    @property
    def delay_timedelta(self) -> timedelta:
        return timedelta(**{self.delay_unit: self.delay})

    @property
    def is_branch(self) -> bool:
        return self.kind == self.Kind.BRANCH

    @property
    def index_in_path(self) -> int:
        """0-based place in its sequence (main or path)."""
        return self.position if self.path is None else self.position - PATH_BASE * (self.path + 1)


class Enrollment(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "In the sequence"
        COMPLETED = "completed", "Every step done"
        STOPPED = "stopped", "Stopped (reply, opt-out, do-not-contact or cancel)"
        FAILED = "failed", "Stalled on a failed step"

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    # The foreign keys are indexed in Meta (a list's enrollment writes a row per lead
    # at once: one plain index per column, none twice).
    # `workspace` is the campaign's, copied here. It has no constraint of its own in
    # the database: the campaign's and the lead's foreign keys (and theirs to the
    # workspace) already guarantee it exists, and a check per row would add to what
    # a list's enrollment pays at commit. Deleting a workspace still removes its
    # enrollments (on_delete runs in Django).
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="enrollments", db_index=False
    )
    lead = models.ForeignKey(
        Lead, on_delete=models.CASCADE, related_name="enrollments", db_index=False
    )
    # The one line this lead hears from for the whole campaign (None until one is usable).
    line = models.ForeignKey(
        Line, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    state = models.CharField(max_length=10, choices=State, default=State.ACTIVE)
    batch_id = models.CharField(max_length=100, blank=True, default="")
    enrolled_at = models.DateTimeField(default=dj_timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "lead"], name="enrollment_unique_lead")
        ]
        indexes = [
            models.Index(fields=["campaign", "state"], name="enrollment_campaign_state"),
            models.Index(fields=["lead"], name="enrollment_lead"),
            # Deleting a line or a workspace looks its enrollments up.
            models.Index(fields=["line"], name="enrollment_line"),
            models.Index(fields=["workspace"], name="enrollment_workspace"),
        ]

    def __str__(self):
        return f"{self.lead_id} in {self.campaign_id} ({self.state})"


class ApiTool(models.Model):
    """A workspace's saved HTTP request, called for a lead during a campaign: as a
    message variable (`{api_<variable_name>}`), a branch or a stop condition.

    `headers` (a JSON object) is stored encrypted: it usually holds an API key.
    """

    class Method(models.TextChoices):
        GET = "GET"
        POST = "POST"
        PUT = "PUT"
        PATCH = "PATCH"
        DELETE = "DELETE"

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="api_tools")
    name = models.CharField(max_length=100)
    # The name as a variable: "Check DNC Status" -> check_dnc_status.
    variable_name = models.CharField(max_length=100)
    method = models.CharField(max_length=6, choices=Method, default=Method.GET)
    url = models.TextField()
    headers = EncryptedTextField(blank=True, default="")
    body = models.TextField(blank=True, default="")
    response_mapping = models.CharField(max_length=500)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=dj_timezone.now)
    updated_at = models.DateTimeField(default=dj_timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "variable_name"], name="apitool_unique_variable"
            )
        ]

    def __str__(self):
        return self.name

    @property
    def variable(self) -> str:
        return f"api_{self.variable_name}"


class ApiToolRun(models.Model):
    """The outcome of a tool's one call for a lead at a campaign step, so every use
    of the tool at that step (its stop conditions, branch, message variables) sees
    the same answer and the customer's API is asked once."""

    tool = models.ForeignKey(ApiTool, on_delete=models.CASCADE, related_name="runs")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="+", db_index=False)
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="+", db_index=False)
    ok = models.BooleanField()
    value = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=dj_timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tool", "lead", "step"], name="apitoolrun_unique")
        ]
        indexes = [
            # Deleting a lead or a step finds its runs.
            models.Index(fields=["lead"], name="apitoolrun_lead"),
            models.Index(fields=["step"], name="apitoolrun_step"),
        ]


class BranchDecision(models.Model):
    """The path one lead took at a branch step: decided once (the unique constraint
    makes a second decision, from a retry or another worker, fail), with the
    condition that chose it."""

    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="branches")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="decisions")
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="+", db_index=False)
    path = models.PositiveSmallIntegerField()
    condition_type = models.CharField(max_length=24)
    detail = models.CharField(max_length=300, blank=True, default="")
    decided_at = models.DateTimeField(default=dj_timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["enrollment", "step"], name="branchdecision_unique")
        ]
        indexes = [
            models.Index(fields=["campaign", "lead"], name="branchdecision_campaign_lead"),
            models.Index(fields=["step", "path"], name="branchdecision_step_path"),
        ]

    def __str__(self):
        return f"{self.lead_id} took path {self.path + 1} at {self.step}"
