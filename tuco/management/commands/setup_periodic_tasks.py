from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask


class Command(BaseCommand):
    help = "Create or update every periodic task (each app lists its own in its AppConfig)."

    @transaction.atomic
    def handle(self, *args, **options):
        wanted = set()
        for config in apps.get_app_configs():
            for name, task, every in getattr(config, "periodic_tasks", []):
                schedule, _ = IntervalSchedule.objects.get_or_create(
                    every=every, period=IntervalSchedule.SECONDS
                )
                PeriodicTask.objects.update_or_create(
                    name=name, defaults={"task": task, "interval": schedule, "enabled": True}
                )
                wanted.add(name)
                self.stdout.write(f"{name}: {task} every {every}s")
        stale = PeriodicTask.objects.exclude(name__in=wanted).exclude(name__startswith="celery.")
        removed = stale.count()
        stale.delete()
        if removed:
            self.stdout.write(f"Removed {removed} periodic task(s) no longer defined")
