from django.urls import path

from campaigns import tool_views, views

app_name = "campaigns"

urlpatterns = [
    path("campaigns/", views.campaign_list, name="index"),
    path("campaigns/new/", views.campaign_create, name="create"),
    # API tools, before campaigns/<id>/ which would take "tools" for an id.
    path("campaigns/tools/", tool_views.tool_list, name="tools"),
    path("campaigns/tools/new/", tool_views.tool_create, name="tool_create"),
    path("campaigns/tools/<str:tool_id>/", tool_views.tool_edit, name="tool_edit"),
    path("campaigns/tools/<str:tool_id>/delete/", tool_views.tool_delete, name="tool_delete"),
    path("campaigns/tools/<str:tool_id>/test/", tool_views.tool_test, name="tool_test"),
    path("campaigns/<str:campaign_id>/", views.campaign_detail, name="detail"),
    path("campaigns/<str:campaign_id>/edit/", views.campaign_edit, name="edit"),
    path("campaigns/<str:campaign_id>/test/", views.campaign_test, name="test"),
    path("campaigns/<str:campaign_id>/leads/<str:lead_id>/", views.campaign_lead, name="lead"),
    path("campaigns/<str:campaign_id>/<str:action>/", views.campaign_action, name="action"),
]
