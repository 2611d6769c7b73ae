from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from tuco.fields import BytewiseCharField
from tuco.ids import new_id
from tuco.models import Workspace

DEFAULT_LIST_NAME = "Default"
QUICK_SENDS_LIST_NAME = "Quick Sends"
QUICK_SENDS_LIST_DESCRIPTION = "Quick send messages"

# Identifier fields in the order availability checks try them (API.md).
PHONE_FIELDS = ("phone", "alt_phone1", "alt_phone2", "alt_phone3")
EMAIL_FIELDS = ("email", "alt_email1", "alt_email2", "alt_email3")
IDENTIFIER_FIELDS = PHONE_FIELDS + EMAIL_FIELDS
AVAILABILITY_ORDER = (
    "phone", "email", "alt_phone1", "alt_phone2", "alt_phone3",
    "alt_email1", "alt_email2", "alt_email3",
)  # fmt: skip


class LeadList(models.Model):
    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="lead_lists")
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True, default="")
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="leadlist_unique_name"),
        ]

    def __str__(self):
        return self.name


class Lead(models.Model):
    class Availability(models.TextChoices):
        AVAILABLE = "available", "Available"
        UNAVAILABLE = "unavailable", "Unavailable"
        CHECKING = "checking", "Checking"
        ERROR = "error", "Error"
        NO_ACTIVE_LINE = "no_active_line", "No active line"

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    # Indexed by the (workspace, ...) indexes in Meta; a single-column one would only
    # cost every insert.
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="leads", db_index=False
    )
    first_name = models.CharField(max_length=200, blank=True, default="")
    last_name = models.CharField(max_length=200, blank=True, default="")
    email = models.CharField(max_length=254, blank=True, default="")
    phone = models.CharField(max_length=20, blank=True, default="")
    alt_phone1 = models.CharField(max_length=20, blank=True, default="")
    alt_phone2 = models.CharField(max_length=20, blank=True, default="")
    alt_phone3 = models.CharField(max_length=20, blank=True, default="")
    alt_email1 = models.CharField(max_length=254, blank=True, default="")
    alt_email2 = models.CharField(max_length=254, blank=True, default="")
    alt_email3 = models.CharField(max_length=254, blank=True, default="")
    company_name = models.CharField(max_length=200, blank=True, default="")
    job_title = models.CharField(max_length=200, blank=True, default="")
    notes = models.TextField(blank=True, default="")
    custom_fields = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=100, blank=True, default="")
    # The email of the workspace member who owns the contact (empty: nobody yet).
    contact_owner_email = models.CharField(max_length=254, blank=True, default="")
    availability_status = models.CharField(
        max_length=16, choices=Availability, blank=True, default=""
    )
    availability_checked_at = models.DateTimeField(null=True, blank=True)
    # The address that answered "available" (or the last one tried).
    availability_address = models.CharField(max_length=254, blank=True, default="")
    opted_out = models.BooleanField(default=False)
    opted_out_at = models.DateTimeField(null=True, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    lists = models.ManyToManyField(LeadList, through="ListMembership", related_name="leads")
    tags = models.ManyToManyField("Tag", through="LeadTag", related_name="leads")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "-created_at"], name="lead_ws_created"),
            models.Index(fields=["workspace", "availability_status"], name="lead_ws_avail"),
        ]

    def __str__(self):
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.phone or self.email or self.pk

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def identifiers(self) -> list[tuple[str, str]]:
        """(field, value) for every identifier the lead has, in field order."""
        return [(f, getattr(self, f)) for f in IDENTIFIER_FIELDS if getattr(self, f)]


class LeadIdentifier(models.Model):
    """One row per normalized phone or email of a lead.

    Identity across the eight identifier columns cannot be a unique index on the
    lead table itself, so each identifier is mirrored here and the database
    enforces uniqueness per workspace.
    """

    # No single-column indexes beside the unique (workspace, value) one, which serves
    # workspace look-ups too: with one, a planner working from stale statistics (in
    # the middle of a big import) may probe it instead and read the whole workspace
    # for every identifier.
    # `workspace` is the lead's workspace, copied here for the unique index.
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    value = BytewiseCharField(max_length=254)
    # Indexed by leadidentifier_lead below.
    lead = models.ForeignKey(
        Lead, on_delete=models.CASCADE, related_name="identifier_rows", db_index=False
    )
    field = models.CharField(max_length=16)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "value"], name="leadidentifier_unique"),
        ]
        indexes = [models.Index(fields=["lead"], name="leadidentifier_lead")]


class ListMembership(models.Model):
    # Indexed by the unique (lead_list, lead) and the lead index below only, for the
    # same reason as LeadIdentifier.
    lead_list = models.ForeignKey(
        LeadList, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    lead = models.ForeignKey(
        Lead, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["lead_list", "lead"], name="listmembership_unique"),
        ]
        indexes = [models.Index(fields=["lead"], name="listmembership_lead")]


class Tag(models.Model):
    """A workspace's label for leads; names are unique per workspace, ignoring case."""

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                "workspace", Lower("name"), name="tag_unique_name_per_workspace"
            ),
        ]

    def __str__(self):
        return self.name


class LeadTag(models.Model):
    """A tag on a lead, with when and by what it was added (api, import, dashboard, rule)."""

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="lead_tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="lead_tags")
    source = models.CharField(max_length=16, default="api")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["lead", "tag"], name="leadtag_unique"),
        ]


class AvailabilityCacheEntry(models.Model):
    """The last answer a relay gave for one address in one workspace, until it expires."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    address = models.CharField(max_length=254)
    available = models.BooleanField()
    checked_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    line = models.ForeignKey(
        "lines.Line", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name_plural = "availability cache entries"
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "address"], name="availabilitycache_unique_address"
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="availabilitycache_expires")]

    def __str__(self):
        return f"{self.address}: {'available' if self.available else 'unavailable'}"


class AvailabilityJob(models.Model):
    """A background availability check of many leads, processed a line slot at a time."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        WAITING_QUOTA = "waiting_quota", "Waiting for quota"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    FINAL = (Status.DONE, Status.CANCELLED, Status.FAILED)

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="availability_jobs"
    )
    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    source = models.CharField(max_length=16, default="manual")  # manual | import
    force = models.BooleanField(default=False)
    lead_ids = models.JSONField(default=list)
    # Leads before this position in lead_ids have been processed.
    cursor = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    successful = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    detail = models.CharField(max_length=500, blank=True, default="")
    # While set in the future, one task holds the job; a duplicate delivery backs off.
    lease_until = models.DateTimeField(null=True, blank=True)
    resume_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "resume_at"], name="availabilityjob_status"),
            models.Index(fields=["workspace", "-created_at"], name="availabilityjob_ws"),
        ]

    def __str__(self):
        return f"Availability job {self.pk} ({self.status} {self.done}/{self.total})"


class ImportJob(models.Model):
    """A CSV import from the dashboard: the uploaded text, then the background run.

    The file and the progress live in the database, the state every web and worker
    process shares, so the worker that runs the import need not be on the machine
    that took the upload. `state` holds what the pages show (headers, preview,
    mapping, counts, row errors); the text is dropped once the import is done.
    """

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="imports")
    state = models.JSONField(default=dict)
    content = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="importjob_created")]

    def __str__(self):
        return f"Import {self.pk} ({self.status})"

    @property
    def status(self) -> str:
        return self.state["status"]

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")

    @property
    def percent(self) -> int:
        total = self.state.get("total") or 0
        if self.status == "done":
            return 100
        return min(99, int(100 * self.state.get("processed", 0) / total)) if total else 0
