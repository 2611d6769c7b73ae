from django.urls import path

from tuco.api import endpoints

urlpatterns = [
    path("workspace", endpoints.WorkspaceDetailApi.as_view(), name="api-workspace"),
]
