import logging
import os

from celery import Celery, signals
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

    # Why a worker used to exit when Redis dropped: once the connection is lost,
    # Celery lets go of it, and kombu's Redis channel on it then fails every call with
    # AttributeError ("'NoneType' object has no attribute 'hostname'": its client is
    # gone) instead of a connection error. Two calls come after the loss whenever the
    # worker held a task: closing the channel, which puts the tasks it holds back on
    # the queue, and the acknowledgement of a task that ends after it. Celery took
    # either for an unrecoverable error and stopped the worker. Here both are what
    # they are, a lost connection: the acknowledgement is logged as not done and the
    # consumer reconnects. Nothing is lost: those tasks stay in Redis's unacked set,
    # which hands them out again after the visibility timeout, and their rows are
    # claimed or leased (messaging.leases). The price: an AttributeError of the
    # consumer's own also makes it reconnect, logged, rather than stop the worker.

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connection_errors = (*self.connection_errors, AttributeError)

    def on_connection_error_after_connected(self, exc):
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError:
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


@signals.task_prerun.connect
@signals.task_postrun.connect
def _database_connections_between_tasks(sender=None, **kwargs):
    """Around each task, Django's rules for a kept connection, as around a request:
    closed once older than CONN_MAX_AGE or broken, health-checked before its next use
    (CONN_HEALTH_CHECKS). Celery's own Django fixup would close it around every task
    (a new Postgres backend per task) unless CELERY_DB_REUSE_MAX says otherwise, which
    the settings do. An eager task runs inside its caller's transaction: not here."""
    if sender is not None and sender.request.is_eager:
        return
    from django.db import close_old_connections

    close_old_connections()


app = Celery("tuco")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
