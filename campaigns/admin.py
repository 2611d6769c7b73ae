from django.contrib import admin, messages

from campaigns import services
from campaigns.models import Campaign, Enrollment, Step
from tuco.errors import ServiceError


class StepInline(admin.TabularInline):
    model = Step
    extra = 0
    fields = ("position", "message", "delay", "delay_unit", "message_type", "sms_fallback_message")


def _run_action(modeladmin, request, queryset, action: str, done: str) -> None:
    """Run a campaign action through its service (the same rules and side effects as
    the API and the dashboard: enrolling, holding, releasing), one campaign at a time."""
    succeeded = 0
    for campaign in queryset.select_related("workspace").order_by("created_at", "pk"):
        try:
            services.campaign_action(
                workspace=campaign.workspace, campaign_id=campaign.pk, action=action
            )
        except ServiceError as exc:
            modeladmin.message_user(request, f"{campaign.name}: {exc}", messages.ERROR)
        else:
            succeeded += 1
    if succeeded:
        modeladmin.message_user(request, f"{succeeded} campaign(s) {done}.", messages.SUCCESS)


@admin.action(description="Start the selected draft campaigns")
def start_campaigns(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, "start", "started")


@admin.action(description="Pause the selected campaigns")
def pause_campaigns(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, "pause", "paused")


@admin.action(description="Resume the selected campaigns")
def resume_campaigns(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, "resume", "resumed")


@admin.action(description="Retry the failed messages of the selected campaigns")
def retry_failed_campaigns(modeladmin, request, queryset):
    _run_action(modeladmin, request, queryset, "retry_failed", "retrying their failed messages")


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "workspace", "status", "lead_list", "created_at", "started_at")
    list_filter = ("status", "reply_behavior")
    list_select_related = ("workspace", "lead_list")
    search_fields = ("name", "id")
    raw_id_fields = ("workspace", "lead_list")
    filter_horizontal = ("lines",)
    # Status moves only through the actions: a bare edit would skip enrolling,
    # holding and releasing the campaign's messages.
    readonly_fields = (
        "status",
        "created_at",
        "updated_at",
        "started_at",
        "paused_at",
        "completed_at",
    )
    actions = (start_campaigns, pause_campaigns, resume_campaigns, retry_failed_campaigns)
    inlines = [StepInline]


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):
    list_display = ("campaign", "position", "delay", "delay_unit", "message_type")
    list_select_related = ("campaign",)
    raw_id_fields = ("campaign",)
    search_fields = ("campaign__name", "message")


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = ("lead", "campaign", "line", "state", "enrolled_at", "finished_at")
    list_filter = ("state",)
    search_fields = ("lead__id", "lead__phone", "lead__email", "campaign__name")
    raw_id_fields = ("workspace", "campaign", "lead", "line")
    list_select_related = ("lead", "campaign", "line")
