"""Dashboard URLs. Each app's pages are included here from its own urls.py."""

from django.urls import include, path

from tuco import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("workspace/switch/", views.workspace_switch, name="workspace-switch"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/api-keys/", views.api_key_create, name="api-key-create"),
    path("settings/api-keys/<str:key_id>/revoke/", views.api_key_revoke, name="api-key-revoke"),
    path("settings/timezone/", views.workspace_timezone, name="workspace-timezone"),
    path("settings/members/", views.member_add, name="member-add"),
    path("", include("messaging.settings_urls")),
    path("", include("leads.urls")),
    path("", include("messaging.urls")),
    path("", include("lines.urls")),
    path("", include("campaigns.urls")),
    path("", include("messaging.unibox_urls")),
]
