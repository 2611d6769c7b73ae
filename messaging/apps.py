from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    # (name, task name, every N seconds): collected by setup_periodic_tasks. The
    # webhook and relay tasks keep the names they were first scheduled under.
    periodic_tasks = [
        ("Dispatch due messages", "messaging.tasks.dispatch_due_messages", 3),
        # Every messaging.leases.SWEEP_EVERY: a dead worker's rows are back within a minute.
        ("Reconcile messages stuck in sending", "messaging.tasks.reconcile_stuck_messages", 10),
        ("Deliver due webhooks", "messaging.inbound_tasks.webhook_deliver_due", 5),
        ("Poll line relays for missed events", "messaging.inbound_tasks.relay_poll_lines", 60),
        (
            "Flag iMessages with no delivery receipt",
            "messaging.tasks.mark_undelivered_messages",
            60,
        ),
    ]

    def ready(self):
        from leads.signals import lead_availability_updated, leads_deleting
        from lines.signals import (
            line_capacity_changed,
            line_deleted,
            line_safety_changed,
            line_saved,
        )
        from messaging.dispatch import on_line_capacity_changed
        from messaging.frequency_views import SETTINGS_SECTION as FREQUENCY_SECTION
        from messaging.inbound_tasks import on_line_deleted, on_line_saved
        from messaging.lead_cleanup import on_leads_deleting
        from messaging.safety import on_line_safety_changed
        from messaging.settings_views import SETTINGS_SECTION
        from messaging.webhooks import on_lead_availability_updated
        from tuco.settings_sections import settings_section_register

        line_saved.connect(on_line_saved, dispatch_uid="messaging.relay_register_webhook")
        line_deleted.connect(on_line_deleted, dispatch_uid="messaging.relay_remove_webhook")
        lead_availability_updated.connect(
            on_lead_availability_updated, dispatch_uid="messaging.lead_availability_webhook"
        )
        leads_deleting.connect(on_leads_deleting, dispatch_uid="messaging.lead_cleanup")
        line_safety_changed.connect(on_line_safety_changed, dispatch_uid="messaging.line_alerts")
        line_capacity_changed.connect(
            on_line_capacity_changed, dispatch_uid="messaging.wake_for_line"
        )
        settings_section_register(SETTINGS_SECTION)
        settings_section_register(FREQUENCY_SECTION)
