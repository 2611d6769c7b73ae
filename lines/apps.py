from django.apps import AppConfig


class LinesConfig(AppConfig):
    name = "lines"
    # (name, dotted task path, every N seconds): collected by setup_periodic_tasks.
    periodic_tasks = [
        ("Check the health of every line", "lines.tasks.lines_health_check_all", 60),
    ]
