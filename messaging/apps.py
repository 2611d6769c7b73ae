from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    periodic_tasks = [
        ("Dispatch due messages", "messaging.tasks.dispatch_due_messages", 3),
        ("Reconcile messages stuck in sending", "messaging.tasks.reconcile_stuck_messages", 60),
        ("Deliver due webhooks", "messaging.inbound_tasks.webhook_deliver_due", 5),
        ("Poll line relays for missed events", "messaging.inbound_tasks.relay_poll_lines", 60),
    ]

    def ready(self):
        from messaging.inbound_tasks import connect_signals

        connect_signals()
