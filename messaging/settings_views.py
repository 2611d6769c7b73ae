"""Messaging's sections of the Settings page: fallback SMS (Twilio) and webhooks.

Registered with the page in MessagingConfig.ready(); a form with errors renders the
whole Settings page again, with that form."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from messaging.forms import FallbackConfigForm, WebhookEndpointForm
from messaging.models import FallbackConfig, WebhookDelivery, WebhookEndpoint
from messaging.models.webhooks import WEBHOOK_EVENTS
from messaging.services import fallback_config_update
from messaging.webhook_delivery import webhook_delivery_resend as resend
from messaging.webhooks import webhook_endpoint_create, webhook_endpoint_delete
from tuco.errors import ServiceError
from tuco.forms import add_service_error
from tuco.settings_sections import SettingsSection
from tuco.views import settings_page_error, workspace_required


def settings_context(request, **forms) -> dict:
    workspace = request.workspace
    config = FallbackConfig.objects.filter(workspace=workspace).first()
    initial = {}
    if config is not None:
        initial = {
            "enabled": config.enabled,
            "twilio_account_sid": config.twilio_account_sid,
            "twilio_from_number": config.twilio_from_number,
            "send_fallback_sms_on_failed": config.send_fallback_sms_on_failed,
        }
    return {
        "fallback_config": config,
        "fallback_form": forms.get("fallback_form") or FallbackConfigForm(initial=initial),
        "webhooks": list(
            WebhookEndpoint.objects.filter(workspace=workspace).order_by("created_at")
        ),
        "webhook_form": forms.get("webhook_form") or WebhookEndpointForm(events=WEBHOOK_EVENTS),
        "new_webhook": forms.get("new_webhook"),
        "deliveries": list(
            WebhookDelivery.objects.filter(workspace=workspace)
            .select_related("endpoint")
            .order_by("-created_at")[:20]
        ),
    }


# A webhook's secret is shown by the GET its creation redirects to, and only there.
NEW_WEBHOOK_SESSION = "tuco.new_webhook"


def new_webhook_shown_once(request) -> dict:
    shown = {}
    endpoint_id = request.session.pop(NEW_WEBHOOK_SESSION, None)
    if endpoint_id:
        shown["new_webhook"] = WebhookEndpoint.objects.filter(
            workspace=request.workspace, pk=endpoint_id
        ).first()
    return shown


SETTINGS_SECTION = SettingsSection(
    template="messaging/_settings.html",
    context=settings_context,
    shown_once=new_webhook_shown_once,
)


@require_POST
@workspace_required(manage=True)
def fallback_config(request):
    form = FallbackConfigForm(request.POST)
    if form.is_valid():
        try:
            fallback_config_update(workspace=request.workspace, **form.service_fields())
        except ServiceError as exc:
            add_service_error(form, exc, {"twilioFromNumber": "twilio_from_number"})
        else:
            messages.success(request, "Fallback SMS settings saved.")
            return redirect("settings")
    return settings_page_error(request, fallback_form=form)


@require_POST
@workspace_required(manage=True)
def webhook_create(request):
    form = WebhookEndpointForm(request.POST, events=WEBHOOK_EVENTS)
    if form.is_valid():
        data = form.cleaned_data
        try:
            endpoint = webhook_endpoint_create(
                workspace=request.workspace,
                url=data["url"],
                events=data["events"],
                name=data["name"],
                description=data["description"],
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            request.session[NEW_WEBHOOK_SESSION] = endpoint.pk
            return redirect("settings")
    return settings_page_error(request, webhook_form=form)


@require_POST
@workspace_required(manage=True)
def webhook_delete(request, endpoint_id):
    try:
        webhook_endpoint_delete(workspace=request.workspace, endpoint_id=endpoint_id)
    except ServiceError:
        raise Http404("Webhook not found") from None
    messages.success(request, "Webhook deleted.")
    return redirect("settings")


@require_POST
@workspace_required(manage=True)
def webhook_delivery_resend(request, delivery_id):
    if not WebhookDelivery.objects.filter(workspace=request.workspace, pk=delivery_id).exists():
        raise Http404("Delivery not found")
    resend(delivery_id=delivery_id)
    messages.success(request, "Delivery queued again.")
    return redirect("settings")
