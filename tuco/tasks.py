from celery import shared_task
from django.conf import settings

from tuco.services import idempotency_purge_expired


@shared_task
def purge_idempotency_keys():
    return idempotency_purge_expired(ttl_seconds=settings.IDEMPOTENCY_TTL_SECONDS)
