from django.urls import path

from messaging import views

app_name = "messaging"

urlpatterns = [
    path("quick-send/", views.quick_send, name="quick_send"),
    path("quick-send/check/", views.quick_send_check, name="quick_send_check"),
    path("quick-send/<str:message_id>/", views.quick_send_result, name="quick_send_result"),
]
