"""Operator admin for the messaging app."""

# The outbox: messages, conversations, per-recipient gates, Twilio settings.
from django import forms
from django.contrib import admin

from messaging.forms import FrequencyCapForm
from messaging.frequency import frequency_cap_update
from messaging.models import Conversation, FallbackConfig, FrequencyCap, Message, RecipientGate


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id", "message_type", "status", "recipient_phone", "recipient_email", "line",
        "campaign_id", "due_at", "sent_at", "created_at",
    )  # fmt: skip
    list_filter = ("status", "message_type")
    search_fields = ("id", "recipient_phone", "recipient_email", "external_message_id", "body")
    raw_id_fields = ("workspace", "lead", "line")
    date_hierarchy = "created_at"
    readonly_fields = ("temp_guid", "created_at", "updated_at")


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("address", "workspace", "line", "chat_guid", "last_message_at")
    search_fields = ("address", "chat_guid")
    raw_id_fields = ("workspace", "lead", "line")


@admin.register(RecipientGate)
class RecipientGateAdmin(admin.ModelAdmin):
    list_display = ("address", "workspace", "last_sent_at", "last_line")
    search_fields = ("address",)
    raw_id_fields = ("workspace", "last_line")


@admin.register(FallbackConfig)
class FallbackConfigAdmin(admin.ModelAdmin):
    list_display = ("workspace", "enabled", "twilio_from_number", "send_fallback_sms_on_failed")
    raw_id_fields = ("workspace",)
    exclude = ("twilio_auth_token",)


# Inbound messages, do-not-contact and webhooks out.
from django.contrib import admin, messages  # noqa: E402

from messaging.models import (  # noqa: E402
    DoNotContact,
    InboundMessage,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)


@admin.register(InboundMessage)
class InboundMessageAdmin(admin.ModelAdmin):
    list_display = ("address", "text", "channel", "workspace", "lead", "received_at", "is_read")
    list_filter = ("channel", "is_read", "is_opt_out")
    search_fields = ("address", "text", "external_id")
    raw_id_fields = ("workspace", "conversation", "lead", "line", "in_reply_to")
    date_hierarchy = "received_at"


@admin.register(DoNotContact)
class DoNotContactAdmin(admin.ModelAdmin):
    list_display = ("value", "kind", "source", "reason", "workspace", "created_at")
    list_filter = ("kind", "source")
    search_fields = ("value", "reason")
    raw_id_fields = ("workspace",)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("name", "url", "workspace", "is_active", "disabled_reason", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "url")
    raw_id_fields = ("workspace",)
    exclude = ("secret",)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("attempted_at", "status_code", "error", "duration_ms", "response_body")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "event",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event")
    search_fields = ("id", "endpoint__url")
    raw_id_fields = ("workspace", "endpoint")
    readonly_fields = ("delivered_at", "last_status_code", "last_error", "attempts")
    inlines = [WebhookAttemptInline]
    actions = ["resend"]

    @admin.action(description="Resend (same webhook-id)")
    def resend(self, request, queryset):
        from messaging.webhook_delivery import webhook_delivery_resend

        count = 0
        for delivery_id in queryset.values_list("pk", flat=True):
            webhook_delivery_resend(delivery_id=delivery_id)
            count += 1
        self.message_user(request, f"{count} deliveries queued again", messages.SUCCESS)


class FrequencyCapAdminForm(forms.ModelForm):
    """The bounds of the Settings page's form."""

    per_day = FrequencyCapForm.base_fields["per_day"]
    per_week = FrequencyCapForm.base_fields["per_week"]

    class Meta:
        model = FrequencyCap
        fields = ["workspace", "per_day", "per_week"]


@admin.register(FrequencyCap)
class FrequencyCapAdmin(admin.ModelAdmin):
    """A workspace's messages-per-lead cap; saved through frequency_cap_update."""

    form = FrequencyCapAdminForm
    list_display = ["workspace", "per_day", "per_week", "updated_at"]
    search_fields = ["workspace__name"]
    list_select_related = ["workspace"]

    def get_readonly_fields(self, request, obj=None):
        return ["workspace"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        frequency_cap_update(
            workspace=data.get("workspace") or obj.workspace,
            per_day=data["per_day"],
            per_week=data["per_week"],
        )
