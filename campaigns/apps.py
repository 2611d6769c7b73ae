from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    # (name, dotted task path, every N seconds): collected by setup_periodic_tasks.
    periodic_tasks = [
        ("Pace active campaigns", "campaigns.tasks.campaigns_tick", 15),
    ]

    def ready(self):
        from campaigns.sequencing import on_message_status_changed
        from campaigns.tools import api_values
        from messaging.signals import (
            api_values_requested,
            campaign_names_requested,
            message_status_changed,
        )

        message_status_changed.connect(
            on_message_status_changed, dispatch_uid="campaigns.sequence_on_status_change"
        )
        campaign_names_requested.connect(campaign_names, dispatch_uid="campaigns.campaign_names")
        api_values_requested.connect(api_values, dispatch_uid="campaigns.api_values")


def campaign_names(sender, workspace_id: str, campaign_ids: list[str], **kwargs) -> dict[str, str]:
    """Receiver of messaging.signals.campaign_names_requested."""
    from campaigns.models import Campaign

    return dict(
        Campaign.objects.filter(workspace_id=workspace_id, pk__in=campaign_ids).values_list(
            "pk", "name"
        )
    )
