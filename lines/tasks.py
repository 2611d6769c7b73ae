from celery import shared_task

from lines.models import Line
from lines.services import line_health_check


@shared_task
def line_health_check_task(line_id: str):
    line = Line.objects.filter(pk=line_id).first()
    if line is not None:
        line_health_check(line=line)


@shared_task
def lines_health_check_all():
    """Fan out one health check per active line, so one slow relay holds up no other."""
    line_ids = list(Line.objects.filter(is_active=True).values_list("pk", flat=True))
    for line_id in line_ids:
        line_health_check_task.delay(line_id)
    return len(line_ids)


@shared_task
def lines_health_check_down():
    """Check the active lines that are down again between the minute's checks: a
    relay that comes back is back in rotation within this task's period, not the
    minute's. Quarantined lines wait for their cool-down, as before."""
    line_ids = list(
        Line.objects.filter(is_active=True, health_status=Line.Health.DOWN).values_list(
            "pk", flat=True
        )
    )
    for line_id in line_ids:
        line_health_check_task.delay(line_id)
    return len(line_ids)
