from django.urls import path

from lines import views

app_name = "lines"

urlpatterns = [
    path("lines/", views.line_list, name="index"),
    path("lines/new/", views.line_create, name="create"),
    path("lines/<str:line_id>/edit/", views.line_edit, name="edit"),
    path("lines/<str:line_id>/delete/", views.line_delete, name="delete"),
    path("lines/<str:line_id>/check/", views.line_check, name="check"),
    path("lines/<str:line_id>/override/", views.line_override, name="override"),
]
