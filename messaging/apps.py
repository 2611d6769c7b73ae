from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    # (name, task name, every N seconds): collected by setup_periodic_tasks. The
    # webhook and relay tasks keep the names they were first scheduled under.
    periodic_tasks = [
        ("Dispatch due messages", "messaging.tasks.dispatch_due_messages", 3),
        ("Reconcile messages stuck in sending", "messaging.tasks.reconcile_stuck_messages", 60),
        ("Deliver due webhooks", "messaging.inbound_tasks.webhook_deliver_due", 5),
        ("Poll line relays for missed events", "messaging.inbound_tasks.relay_poll_lines", 60),
    ]

    def ready(self):
        from leads.signals import lead_availability_updated
        from lines.signals import line_saved
        from messaging.frequency_views import SETTINGS_SECTION as FREQUENCY_SECTION
        from messaging.inbound_tasks import on_line_saved
        from messaging.settings_views import SETTINGS_SECTION
        from messaging.webhooks import on_lead_availability_updated
        from tuco.settings_sections import settings_section_register

        line_saved.connect(on_line_saved, dispatch_uid="messaging.relay_register_webhook")
        lead_availability_updated.connect(
            on_lead_availability_updated, dispatch_uid="messaging.lead_availability_webhook"
        )
        settings_section_register(SETTINGS_SECTION)
        settings_section_register(FREQUENCY_SECTION)
