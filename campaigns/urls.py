from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("campaigns/", views.campaign_list, name="index"),
    path("campaigns/new/", views.campaign_create, name="create"),
    path("campaigns/<str:campaign_id>/", views.campaign_detail, name="detail"),
    path("campaigns/<str:campaign_id>/edit/", views.campaign_edit, name="edit"),
    path("campaigns/<str:campaign_id>/test/", views.campaign_test, name="test"),
    path("campaigns/<str:campaign_id>/leads/<str:lead_id>/", views.campaign_lead, name="lead"),
    path("campaigns/<str:campaign_id>/<str:action>/", views.campaign_action, name="action"),
]
