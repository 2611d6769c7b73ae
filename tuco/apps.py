from django.apps import AppConfig


class TucoConfig(AppConfig):
    name = "tuco"
    verbose_name = "Workspaces"
    # (name, dotted task path, every N seconds): collected by setup_periodic_tasks.
    periodic_tasks = [
        ("Purge expired idempotency keys", "tuco.tasks.purge_idempotency_keys", 3600),
    ]
