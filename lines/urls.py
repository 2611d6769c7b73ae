from django.urls import path

from lines import settings_views, views

app_name = "lines"

urlpatterns = [
    path("lines/", views.line_list, name="index"),
    path("lines/new/", views.line_create, name="create"),
    path("lines/<str:line_id>/edit/", views.line_edit, name="edit"),
    path("lines/<str:line_id>/delete/", views.line_delete, name="delete"),
    path("lines/<str:line_id>/check/", views.line_check, name="check"),
    path("lines/<str:line_id>/override/", views.line_override, name="override"),
    path("lines/<str:line_id>/warmup/", views.line_warmup, name="warmup"),
    path(
        "lines/<str:line_id>/rotate-callback-token/",
        views.line_rotate_token,
        name="rotate_token",
    ),
    path("settings/line-pacing/", settings_views.line_policy, name="policy"),
]
