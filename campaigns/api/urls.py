from django.urls import path

from campaigns.api import conditions, dryrun, tools, views

urlpatterns = [
    path("campaign-tools", tools.CampaignToolsApi.as_view(), name="api-campaign-tools"),
    path("campaign-tools/test", tools.CampaignToolTestApi.as_view(), name="api-campaign-tool-test"),
    path("campaigns", views.CampaignsApi.as_view(), name="api-campaigns"),
    path(
        "campaigns/evaluate-conditions",
        conditions.EvaluateConditionsApi.as_view(),
        name="api-campaign-evaluate-conditions",
    ),
    path("campaigns/<str:campaign_id>", views.CampaignDetailApi.as_view(), name="api-campaign"),
    path(
        "campaigns/<str:campaign_id>/leads",
        views.CampaignEnrollApi.as_view(),
        name="api-campaign-leads",
    ),
    path(
        "campaigns/<str:campaign_id>/dry-run",
        dryrun.CampaignDryRunApi.as_view(),
        name="api-campaign-dry-run",
    ),
    path(
        "campaigns/<str:campaign_id>/enroll",
        views.CampaignEnrollAliasApi.as_view(),
        name="api-campaign-enroll",
    ),
]
