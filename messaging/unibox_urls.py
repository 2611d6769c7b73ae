from django.urls import path

from messaging import unibox_views

app_name = "unibox"

urlpatterns = [
    path("unibox/", unibox_views.inbox, name="index"),
    path("unibox/<str:conversation_id>/", unibox_views.inbox, name="conversation"),
    path("unibox/<str:conversation_id>/thread/", unibox_views.thread, name="thread"),
    path("unibox/<str:conversation_id>/reply/", unibox_views.reply, name="reply"),
]
