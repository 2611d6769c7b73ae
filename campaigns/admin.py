from django.contrib import admin

from campaigns.models import Campaign, Enrollment, Step


class StepInline(admin.TabularInline):
    model = Step
    extra = 0
    fields = ("position", "message", "delay", "delay_unit", "message_type", "sms_fallback_message")


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "workspace", "status", "lead_list", "created_at", "started_at")
    list_filter = ("status", "reply_behavior")
    search_fields = ("name", "id")
    raw_id_fields = ("workspace", "lead_list")
    filter_horizontal = ("lines",)
    readonly_fields = ("created_at", "updated_at", "started_at", "paused_at", "completed_at")
    inlines = [StepInline]


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):
    list_display = ("campaign", "position", "delay", "delay_unit", "message_type")
    raw_id_fields = ("campaign",)
    search_fields = ("campaign__name", "message")


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = ("lead", "campaign", "line", "state", "enrolled_at", "finished_at")
    list_filter = ("state",)
    search_fields = ("lead__id", "lead__phone", "lead__email", "campaign__name")
    raw_id_fields = ("workspace", "campaign", "lead", "line")
    list_select_related = ("lead", "campaign", "line")
