"""Messaging's part of the Settings page (included without a namespace, under /settings/)."""

from django.urls import path

from messaging import frequency_views, settings_views

urlpatterns = [
    path("settings/fallback/", settings_views.fallback_config, name="fallback-config"),
    path("settings/webhooks/", settings_views.webhook_create, name="webhook-create"),
    path("settings/frequency-cap/", frequency_views.frequency_cap, name="frequency-cap"),
    path(
        "settings/webhooks/<str:endpoint_id>/delete/",
        settings_views.webhook_delete,
        name="webhook-delete",
    ),
    path(
        "settings/webhooks/deliveries/<str:delivery_id>/resend/",
        settings_views.webhook_delivery_resend,
        name="webhook-delivery-resend",
    ),
]
