from celery import shared_task

from campaigns import services


@shared_task(ignore_result=True)
def campaigns_tick():
    services.campaigns_tick()
