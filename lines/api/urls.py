from django.urls import path

from lines.api import views

urlpatterns = [
    path("lines/by-user", views.LinesByUserApi.as_view(), name="api-lines-by-user"),
    # Before lines/<line_id>, which would take "check-availability" for an id.
    path("lines/check-availability", views.LineCheckApi.as_view(), name="api-line-check"),
    path("health-check", views.LinesHealthCheckApi.as_view(), name="api-health-check"),
    path("lines/spam-monitor", views.SpamMonitorApi.as_view(), name="api-lines-spam-monitor"),
    path("lines", views.LineListApi.as_view(), name="api-lines"),
    path(
        "lines/<str:line_id>/safety-override",
        views.LineSafetyOverrideApi.as_view(),
        name="api-line-safety-override",
    ),
    path("lines/<str:line_id>", views.LineDetailApi.as_view(), name="api-line"),
    path(
        "lines/<str:line_id>/rotate-callback-token",
        views.LineWebhookTokenRotateApi.as_view(),
        name="api-line-rotate-callback-token",
    ),
    path("lines/<str:line_id>/warmup", views.LineWarmupApi.as_view(), name="api-line-warmup"),
]
