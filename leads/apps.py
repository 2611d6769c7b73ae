from django.apps import AppConfig


class LeadsConfig(AppConfig):
    name = "leads"
    # (name, dotted task path, every N seconds): collected by setup_periodic_tasks.
    periodic_tasks = [
        ("Resume availability jobs", "leads.tasks.availability_jobs_resume", 300),
        ("Purge expired availability answers", "leads.tasks.availability_cache_purge", 3600),
    ]

    def ready(self):
        from leads.availability import on_leads_created, on_line_capacity_changed
        from leads.signals import leads_created
        from lines.signals import line_capacity_changed

        leads_created.connect(on_leads_created, dispatch_uid="leads.availability_on_create")
        line_capacity_changed.connect(
            on_line_capacity_changed, dispatch_uid="leads.availability_wake"
        )
