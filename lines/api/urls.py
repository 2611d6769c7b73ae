from django.urls import path

from lines.api import views

urlpatterns = [
    path("lines/by-user", views.LinesByUserApi.as_view(), name="api-lines-by-user"),
    path("lines", views.LineListApi.as_view(), name="api-lines"),
    path("lines/<str:line_id>", views.LineDetailApi.as_view(), name="api-line"),
    path("lines/<str:line_id>/warmup", views.LineWarmupApi.as_view(), name="api-line-warmup"),
]
