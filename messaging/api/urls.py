from django.urls import path

from messaging.api import fallback, messages

urlpatterns = [
    path("messages", messages.MessagesApi.as_view(), name="api-messages"),
    path(
        "messages/cancel-for-lead",
        messages.CancelForLeadApi.as_view(),
        name="api-messages-cancel-for-lead",
    ),
    path("messages/<str:message_id>", messages.MessageDetailApi.as_view(), name="api-message"),
    path(
        "workspace/fallback-config",
        fallback.FallbackConfigApi.as_view(),
        name="api-fallback-config",
    ),
    path("fallback-sms", fallback.FallbackSmsApi.as_view(), name="api-fallback-sms"),
]

# Inbound, unibox, do-not-contact, webhooks out and provider callbacks.
from django.urls import path  # noqa: E402

from messaging.api import dnc as dnc_api  # noqa: E402
from messaging.api import receivers as receivers_api  # noqa: E402
from messaging.api import replies as replies_api  # noqa: E402
from messaging.api import unibox as unibox_api  # noqa: E402
from messaging.api import webhooks as webhooks_api  # noqa: E402

urlpatterns += [
    path("replies", replies_api.RepliesApi.as_view(), name="api-replies"),
    path(
        "unibox/conversations",
        unibox_api.ConversationListApi.as_view(),
        name="api-unibox-conversations",
    ),
    path(
        "unibox/conversations/<str:conversation_id>/messages",
        unibox_api.ConversationMessagesApi.as_view(),
        name="api-unibox-conversation-messages",
    ),
    path("unibox/send-reply", unibox_api.SendReplyApi.as_view(), name="api-unibox-send-reply"),
    path("dnc", dnc_api.DncApi.as_view(), name="api-dnc"),
    path("webhooks", webhooks_api.WebhookListApi.as_view(), name="api-webhooks"),
    path(
        "webhooks/twilio/inbound",
        receivers_api.TwilioInboundApi.as_view(),
        name="api-twilio-inbound",
    ),
    path(
        "webhooks/twilio/status", receivers_api.TwilioStatusApi.as_view(), name="api-twilio-status"
    ),
    path("webhooks/<str:endpoint_id>", webhooks_api.WebhookDetailApi.as_view(), name="api-webhook"),
    path(
        "webhooks/<str:endpoint_id>/health-check",
        webhooks_api.WebhookHealthCheckApi.as_view(),
        name="api-webhook-health-check",
    ),
    path(
        "webhooks/<str:endpoint_id>/deliveries",
        webhooks_api.WebhookDeliveriesApi.as_view(),
        name="api-webhook-deliveries",
    ),
    path("relay/<str:token>", receivers_api.RelayWebhookApi.as_view(), name="api-relay-webhook"),
]
