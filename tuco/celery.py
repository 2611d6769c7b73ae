import os

from celery import Celery
from celery.worker.consumer import Consumer as CeleryConsumer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tuco.settings")

# While the broker cannot be reached, the worker tries to connect again after this
# many seconds at most. Celery's own schedule waits 2, 4, 6 ... up to 30 s between
# tries, so a worker came back up to 30 s after Redis did; these tries are cheap.
BROKER_RETRY_MAX_SECONDS = 2


class Consumer(CeleryConsumer):
    """The worker's consumer (CELERY_WORKER_CONSUMER): Celery's, reconnecting to the
    broker at most BROKER_RETRY_MAX_SECONDS after it answers again."""

    def ensure_connected(self, conn):
        ensure = conn.ensure_connection

        def ensure_connection(*args, **kwargs):
            kwargs.setdefault("interval_start", 1)
            kwargs.setdefault("interval_step", 1)
            kwargs.setdefault("interval_max", BROKER_RETRY_MAX_SECONDS)
            return ensure(*args, **kwargs)

        conn.ensure_connection = ensure_connection
        return super().ensure_connected(conn)


app = Celery("tuco")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
