from django.apps import AppConfig


class LinesConfig(AppConfig):
    name = "lines"
    # (name, dotted task path, every N seconds): collected by setup_periodic_tasks.
    periodic_tasks = [
        ("Check the health of every line", "lines.tasks.lines_health_check_all", 60),
        # A down line is back in rotation within 15 s of its relay answering again.
        ("Check down lines again", "lines.tasks.lines_health_check_down", 15),
    ]

    def ready(self):
        from lines.settings_views import SETTINGS_SECTION
        from tuco.settings_sections import settings_section_register

        settings_section_register(SETTINGS_SECTION)
