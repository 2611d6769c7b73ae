"""Unibox pages: conversations by recipient, one thread with statuses, and replies."""

from datetime import datetime

from django import forms
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from lines.models import Line
from messaging import unibox
from messaging.models import DoNotContact
from tuco.errors import NotFound, ServiceError
from tuco.views import workspace_required

CONVERSATIONS_SHOWN = 100


class ReplyForm(forms.Form):
    message = forms.CharField(
        label="Reply",
        max_length=5000,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Write a reply…"}),
    )

    def clean_message(self):
        value = self.cleaned_data["message"]
        if not value.strip():
            raise forms.ValidationError("Write a message first.")
        return value


def _conversations(request, unread_only: bool) -> list:
    workspace = request.workspace
    conversations = list(
        unibox.conversation_list(workspace=workspace, unread_only=unread_only)[:CONVERSATIONS_SHOWN]
    )
    blocked = set(
        DoNotContact.objects.filter(
            workspace=workspace, value__in=[c.address for c in conversations]
        ).values_list("value", flat=True)
    )
    for conversation in conversations:
        conversation.opted_out = conversation.address in blocked or bool(
            conversation.lead and conversation.lead.opted_out
        )
    return conversations


def _conversation(request, conversation_id):
    try:
        return unibox.conversation_resolve(
            workspace=request.workspace, conversation_id=conversation_id
        )
    except NotFound:
        raise Http404("Conversation not found") from None


def _thread_context(request, conversation, form=None, error: str = "") -> dict:
    workspace = request.workspace
    items = unibox.conversation_thread(workspace=workspace, conversation=conversation)
    line_ids = {item["lineId"] for item in items if item["lineId"]}
    names = {
        line.pk: line.display_name
        for line in Line.objects.filter(workspace=workspace, pk__in=line_ids)
    }
    for item in items:
        item["at"] = datetime.fromisoformat(item["at"]) if item["at"] else None
        item["line_name"] = names.get(item["lineId"], "")
        item["id"] = item["_id"]
    lead = conversation.lead
    opted_out = (
        bool(lead and lead.opted_out)
        or DoNotContact.objects.filter(workspace=workspace, value=conversation.address).exists()
    )
    conversation.unread_count = 0
    return {
        "conversation": conversation,
        "items": items,
        "opted_out": opted_out,
        "form": form or ReplyForm(),
        "reply_error": error,
    }


@require_GET
@workspace_required
def inbox(request, conversation_id=None):
    unread_only = request.GET.get("unread") == "1"
    context = {"section": "unibox", "unread_only": unread_only, "conversation": None}
    if conversation_id is not None:
        # Opening the thread marks it read, so it is read before the list is.
        context.update(_thread_context(request, _conversation(request, conversation_id)))
    context["conversations"] = _conversations(request, unread_only)
    return render(request, "unibox/inbox.html", context)


@require_GET
@workspace_required
def thread(request, conversation_id):
    """The thread alone, for the periodic refresh of an open conversation."""
    context = _thread_context(request, _conversation(request, conversation_id))
    return render(request, "unibox/_messages.html", context)


@require_POST
@workspace_required
def reply(request, conversation_id):
    conversation = _conversation(request, conversation_id)
    form = ReplyForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            unibox.unibox_send_reply(
                workspace=request.workspace,
                text=form.cleaned_data["message"],
                conversation_id=conversation.pk,
            )
        except ServiceError as exc:
            error = str(exc)
        else:
            if not request.htmx:
                return redirect("unibox:conversation", conversation_id=conversation.pk)
            form = ReplyForm()
    if not request.htmx:
        context = {"section": "unibox", "unread_only": False}
        context.update(_thread_context(request, conversation, form=form, error=error))
        context["conversations"] = _conversations(request, False)
        return render(request, "unibox/inbox.html", context, status=400)
    # htmx swaps only 2xx answers: the form with its error comes back as one.
    context = _thread_context(request, conversation, form=form, error=error)
    return render(request, "unibox/_thread.html", context)
