import logging
import os

from celery import Celery
from celery.worker.consumer import Consumer as CeleryConsumer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tuco.settings")

logger = logging.getLogger(__name__)

# While the broker cannot be reached, the worker tries to connect again after this
# many seconds at most. Celery's own schedule waits 2, 4, 6 ... up to 30 s between
# tries, so a worker came back up to 30 s after Redis did; these tries are cheap.
BROKER_RETRY_MAX_SECONDS = 2


class Consumer(CeleryConsumer):
    """The worker's consumer (CELERY_WORKER_CONSUMER): Celery's, reconnecting to the
    broker at most BROKER_RETRY_MAX_SECONDS after it answers again, and never exiting
    because the broken connection could not be closed."""

    def on_connection_error_after_connected(self, exc):
        try:
            super().on_connection_error_after_connected(exc)
        except Exception:
            # Why a worker used to exit when Redis dropped: closing the broken
            # connection makes kombu's Redis channel put the tasks it holds
            # unacknowledged back on the queue, through a client whose connection is
            # already gone ("'NoneType' object has no attribute 'hostname'"). That is
            # not one of the transport's connection errors, so Celery took it for an
            # unrecoverable error and stopped the worker; it happened whenever the
            # connection dropped while the worker held a task. Nothing needs
            # restoring: those tasks stay in Redis's unacked set, which hands them out
            # again after the visibility timeout (their rows are claimed or leased).
            logger.warning("Could not close the broken broker connection", exc_info=True)

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
