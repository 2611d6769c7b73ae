from django import forms
from django.contrib import admin, messages

from lines.forms import LineHandlesMixin, LinePolicyForm
from lines.models import Line, LinePolicy, LineUsage
from lines.relay import RelayError
from lines.safety import line_safety_override
from lines.selectors import line_today_usage
from lines.services import (
    EDITABLE_FIELDS,
    line_delete,
    line_health_check,
    line_policy_update,
    line_update,
    line_webhook_token_rotate,
    utc_today,
)


class LineUsageInline(admin.TabularInline):
    model = LineUsage
    extra = 0
    can_delete = False
    ordering = ["-date"]
    fields = [
        "date",
        "availability_checks_count",
        "total_messages_count",
        "new_conversations_count",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-date")

    def has_add_permission(self, request, obj=None):
        return False


class LineAdminForm(LineHandlesMixin, forms.ModelForm):
    # Checked like the dashboard's form: any host name is fine (http://macmini:1234).
    server_url = forms.CharField(max_length=500)

    class Meta:
        model = Line
        # The relay password is never shown; it is set from the dashboard or the API.
        fields = [name for name in EDITABLE_FIELDS if name != "relay_password"]


@admin.register(Line)
class LineAdmin(admin.ModelAdmin):
    """Changes go through lines.services.line_update, like the dashboard and the API,
    so a new server URL is health-checked and registered with the relay. Lines are
    added from the dashboard, the API or `manage.py create_line`, which take the
    relay password (never shown here)."""

    form = LineAdminForm
    list_display = [
        "__str__",
        "workspace",
        "server_url",
        "is_active",
        "health_status",
        "health_consecutive_failures",
        "health_checked_at",
        "safety_action",
        "checks_today",
        "messages_today",
    ]
    list_filter = ["is_active", "health_status", "safety_action"]
    search_fields = ["phone", "email", "first_name", "last_name", "server_url", "workspace__name"]
    list_select_related = ["workspace"]
    readonly_fields = [
        "workspace",
        "health_status",
        "health_checked_at",
        "health_consecutive_failures",
        "health_detail",
        "safety_action",
        "safety_action_reason",
        "safety_action_since",
        "safety_action_until",
        "safety_override_until",
        "send_consecutive_failures",
        "canary_consecutive_failures",
        "last_check_at",
        "last_sent_at",
        "warmup_started_at",
        "webhook_registered_at",
        "created_at",
        "updated_at",
    ]
    inlines = [LineUsageInline]
    actions = ["check_health_now", "rotate_callback_token", "lift_safety_action"]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in form.changed_data}
        fields = {name: value for name, value in fields.items() if name in EDITABLE_FIELDS}
        if fields:
            line_update(workspace=obj.workspace, line_id=obj.pk, **fields)

    # Through the service, so the relay's registration for the line is removed too.
    def delete_model(self, request, obj):
        line_delete(workspace=obj.workspace, line_id=obj.pk)

    def delete_queryset(self, request, queryset):
        for line in queryset:
            line_delete(workspace=line.workspace, line_id=line.pk)

    def get_queryset(self, request):
        from django.db.models import Prefetch

        today = LineUsage.objects.filter(date=utc_today())
        return (
            super()
            .get_queryset(request)
            .prefetch_related(Prefetch("usage_days", queryset=today, to_attr="today_usage"))
        )

    @admin.display(description="Checks today")
    def checks_today(self, line):
        usage = line_today_usage(line)
        return f"{usage.availability_checks_count}/{line.daily_availability_checks_limit}"

    @admin.display(description="Messages today")
    def messages_today(self, line):
        usage = line_today_usage(line)
        return f"{usage.total_messages_count}/{line.daily_total_messages_limit}"

    @admin.action(description="Give a new relay callback URL")
    def rotate_callback_token(self, request, queryset):
        for line in queryset:
            line_webhook_token_rotate(workspace=line.workspace, line_id=line.pk)
        self.message_user(
            request, f"{queryset.count()} line(s) have a new relay callback URL", messages.SUCCESS
        )

    @admin.action(description="Check health now")
    def check_health_now(self, request, queryset):
        for line in queryset:
            try:
                line = line_health_check(line=line)
            except RelayError as exc:
                self.message_user(request, f"{line}: {exc.message}", messages.ERROR)
                continue
            level = (
                messages.SUCCESS if line.health_status == Line.Health.HEALTHY else messages.WARNING
            )
            self.message_user(
                request, f"{line}: {line.health_status} ({line.health_detail})", level
            )

    @admin.action(description="Lift the automatic safety action (no action on risk for 24h)")
    def lift_safety_action(self, request, queryset):
        for line in queryset:
            line_safety_override(workspace=line.workspace, line_id=line.pk)
            self.message_user(request, f"{line}: automatic action lifted", messages.SUCCESS)


class LinePolicyAdminForm(forms.ModelForm):
    """The bounds of the Settings page's form, so the admin cannot store what the
    dashboard and the services refuse."""

    warmup_start_cap = LinePolicyForm.base_fields["warmup_start_cap"]
    warmup_days = LinePolicyForm.base_fields["warmup_days"]
    gap_jitter_percent = LinePolicyForm.base_fields["gap_jitter_percent"]

    class Meta:
        model = LinePolicy
        fields = [
            "workspace", "warmup_start_cap", "warmup_days", "gap_jitter_percent",
            "spread_over_window",
        ]  # fmt: skip


@admin.register(LinePolicy)
class LinePolicyAdmin(admin.ModelAdmin):
    """A workspace's warm-up curve and gap jitter; saved through line_policy_update."""

    form = LinePolicyAdminForm
    list_display = [
        "workspace", "warmup_start_cap", "warmup_days", "gap_jitter_percent",
        "spread_over_window",
    ]  # fmt: skip
    search_fields = ["workspace__name"]
    list_select_related = ["workspace"]

    def get_readonly_fields(self, request, obj=None):
        return ["workspace"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        line_policy_update(
            workspace=data.get("workspace") or obj.workspace,
            warmup_start_cap=data["warmup_start_cap"],
            warmup_days=data["warmup_days"],
            gap_jitter_percent=data["gap_jitter_percent"],
            spread_over_window=data["spread_over_window"],
        )
