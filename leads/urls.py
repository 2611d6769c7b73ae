from django.urls import path

from leads import views

app_name = "leads"

urlpatterns = [
    path("leads/", views.lead_list, name="list"),
    path("leads/check/", views.lead_bulk_check, name="bulk_check"),
    path("leads/tag/", views.lead_bulk_tag, name="bulk_tag"),
    path("leads/jobs/<str:job_id>/", views.availability_job, name="job"),
    path("leads/import/", views.import_upload, name="import"),
    path("leads/import/<str:job_id>/", views.import_map, name="import_map"),
    path("leads/import/<str:job_id>/progress/", views.import_progress, name="import_progress"),
    path("leads/<str:lead_id>/check/", views.lead_check, name="check"),
]
