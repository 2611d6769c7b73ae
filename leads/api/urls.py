from django.urls import path

from leads.api import availability, views

# Fixed paths under leads/ (e.g. leads/check-availability) must be listed before
# leads/<str:lead_id>, which matches any single path segment.
urlpatterns = [
    path("leads/check-availability", availability.LeadCheckApi.as_view()),
    path("leads/check-availability/jobs/<str:job_id>", availability.JobDetailApi.as_view()),
    path("leads/check-availability/jobs/<str:job_id>/cancel", availability.JobCancelApi.as_view()),
    path("check-availability", availability.AddressCheckApi.as_view()),
    path("check-availability-rr", availability.RoundRobinCheckApi.as_view()),
    path("leads", views.LeadsApi.as_view(), name="api-leads"),
    path("leads/<str:lead_id>", views.LeadDetailApi.as_view(), name="api-lead-detail"),
    path("leads/<str:lead_id>/tags", views.LeadTagsApi.as_view(), name="api-lead-tags"),
    path("tags", views.TagsApi.as_view(), name="api-tags"),
    path("lists", views.ListsApi.as_view(), name="api-lists"),
    path("lists/<str:list_id>", views.ListDetailApi.as_view(), name="api-list-detail"),
]
