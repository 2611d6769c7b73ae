"""Quick Send: one message to one phone or email, with a live iMessage availability hint."""

import zoneinfo
from datetime import datetime, timedelta

from django import forms
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from leads import availability
from messaging import attachments, services
from messaging.models import Message
from tuco.errors import ServiceError, ValidationFailed
from tuco.forms import add_service_error
from tuco.views import workspace_required

# A text still `sent` this long after it went out may never get a receipt (SMS
# without status callbacks, iMessage with receipts off): the result page stops
# polling rather than spin forever.
POLL_SENT_FOR = timedelta(minutes=2)

PLACEHOLDER_HELP = (
    "Placeholders: {firstName}, {lastName}, {companyName}, {jobTitle}; "
    "a default after a bar: {firstName|there}."
)


# The send service's field names → the Quick Send form's.
QUICK_SEND_FIELDS = {
    "recipientPhone": "recipient",
    "recipientEmail": "recipient",
    "recipientName": "recipient_name",
    "messageType": "channel",
    "message": "message",
    "attachmentUrls": "attachment_url",
    "subject": "subject",
    "scheduledDate": "scheduled_for",
}


class QuickSendForm(forms.Form):
    recipient = forms.CharField(
        label="To",
        max_length=254,
        help_text="A phone number (with country code, e.g. +1 202 555 0123) or an email.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "email"}),
    )
    recipient_name = forms.CharField(label="Name", max_length=200, required=False)
    channel = forms.ChoiceField(
        label="Send as",
        choices=Message.Type.choices,
        initial=Message.Type.IMESSAGE,
        help_text="iMessage falls back to SMS when the recipient is not on iMessage and "
        "SMS fallback is configured.",
    )
    subject = forms.CharField(label="Subject (email)", max_length=300, required=False)
    message = forms.CharField(
        label="Message",
        required=False,
        max_length=10_000,
        help_text=PLACEHOLDER_HELP,
        widget=forms.Textarea(attrs={"rows": 5}),
    )
    attachment_url = forms.URLField(
        label="Attachment URL",
        required=False,
        max_length=2000,
        assume_scheme="https",
        help_text="png, jpg, gif, webp, heic, mp4, mov, caf or pdf, up to 25 MB.",
    )
    when = forms.ChoiceField(
        label="When",
        choices=[("now", "Send now"), ("later", "Schedule")],
        initial="now",
        widget=forms.RadioSelect,
    )
    scheduled_for = forms.DateTimeField(
        label="Send at",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        self.fields[
            "scheduled_for"
        ].help_text = f"In the workspace time zone ({workspace.timezone})."

    def clean_recipient(self):
        value = self.cleaned_data["recipient"].strip()
        try:
            return availability.normalize_address(value)
        except ValidationFailed:
            raise forms.ValidationError("Enter a valid phone number or email address.") from None

    def clean(self):
        data = super().clean()
        if not data.get("message", "").strip() and not data.get("attachment_url"):
            self.add_error("message", "Write a message or add an attachment.")
        recipient = data.get("recipient", "")
        channel = data.get("channel")
        if recipient and channel == Message.Type.SMS and "@" in recipient:
            self.add_error("channel", "SMS needs a phone number.")
        if recipient and channel == Message.Type.EMAIL and "@" not in recipient:
            self.add_error("channel", "Email needs an email address.")
        if data.get("when") == "later":
            moment = data.get("scheduled_for")
            if moment is None:
                if "scheduled_for" not in self.errors:
                    self.add_error("scheduled_for", "Choose when to send it.")
            else:
                zone = zoneinfo.ZoneInfo(self.workspace.timezone)
                moment = timezone.make_aware(moment.replace(tzinfo=None), zone)
                if moment <= timezone.now():
                    self.add_error("scheduled_for", "Choose a time in the future.")
                data["scheduled_for"] = moment
        else:
            data["scheduled_for"] = None
        return data

    def clean_attachment_url(self):
        url = self.cleaned_data["attachment_url"]
        if url:
            try:
                attachments.validate_url(url)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
        return url

    def submission(self) -> dict:
        """The form as message_submit's keyword arguments."""
        data = self.cleaned_data
        recipient = data["recipient"]
        by_email = "@" in recipient
        return {
            "message_type": data["channel"],
            "body": data["message"],
            "recipient_name": data["recipient_name"],
            "recipient_email": recipient if by_email else "",
            "recipient_phone": "" if by_email else recipient,
            "attachment_urls": [data["attachment_url"]] if data["attachment_url"] else [],
            "subject": data["subject"],
            "scheduled_date": data["scheduled_for"],
        }


@workspace_required
def quick_send(request):
    workspace = request.workspace
    form = QuickSendForm(request.POST or None, workspace=workspace)
    if request.method == "POST" and form.is_valid():
        try:
            message = services.message_submit(
                workspace=workspace, created_by_id=request.user.pk, **form.submission()
            ).message
        except ServiceError as exc:
            add_service_error(form, exc, QUICK_SEND_FIELDS)
        else:
            return redirect("messaging:quick_send_result", message_id=message.pk)
    status = 400 if form.is_bound and form.errors else 200
    context = {
        "section": "quick_send",
        "form": form,
        "has_active_line": availability.workspace_has_active_line(workspace=workspace),
    }
    return render(request, "messaging/quick_send.html", context, status=status)


@require_POST
@workspace_required(allow_read_only=True)
def quick_send_check(request):
    """The recipient's iMessage availability, for the icon next to the field."""
    raw = request.POST.get("recipient", "").strip()
    context = {"state": "empty", "recipient": raw}
    if raw:
        try:
            result = availability.availability_check_address(
                workspace=request.workspace, address=raw
            )
        except ValidationFailed:
            context["state"] = "invalid"
        except availability.NoActiveLine:
            context["state"] = "no_active_line"
        except availability.AvailabilityQuotaExhausted:
            context["state"] = "quota"
        except availability.LinesBusy:
            context["state"] = "busy"
        else:
            context["state"] = result.status
            context["address"] = result.address
    return render(request, "messaging/quick_send_status.html", context)


def _message(request, message_id) -> Message:
    message = (
        Message.objects.filter(workspace=request.workspace, pk=message_id)
        .select_related("lead")
        .first()
    )
    if message is None:
        raise Http404("Message not found")
    return message


@require_GET
@workspace_required
def quick_send_result(request, message_id):
    message = _message(request, message_id)
    template = (
        "messaging/quick_send_message.html" if request.htmx else "messaging/quick_send_result.html"
    )
    context = {
        "section": "quick_send",
        "message": message,
        "final": _settled(message, timezone.now()),
    }
    return render(request, template, context)


def _settled(message: Message, now: datetime) -> bool:
    """Whether the result page can stop polling this message."""
    if message.status in Message.FINAL or message.status == Message.Status.DELIVERED:
        return True
    if message.status != Message.Status.SENT:
        return False
    # Email has no delivery receipts: sent is as far as it gets.
    if message.message_type == Message.Type.EMAIL:
        return True
    return message.sent_at is not None and now - message.sent_at >= POLL_SENT_FOR
