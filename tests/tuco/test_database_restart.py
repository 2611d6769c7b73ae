"""Web and worker survive Postgres dropping their connections (a restart, a
failover): the next request or task reconnects and its write is kept.

Between requests, Django's handler announces each one (request_started), which
health-checks a kept connection (CONN_HEALTH_CHECKS) before use; the test client
skips that announcement, so the tests make it as the WSGI handler does. Before each
task, the worker runs Celery's Django fixup and then tuco.celery's check of its kept
connection; the tests do the same.
"""

import psycopg
import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_started
from django.db import connection

from messaging.models import Message
from tests.conftest import api_client

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.IS_POSTGRES, reason="needs Postgres (set DATABASE_URL)"),
]


def before_task(fixup, task):
    """What the worker does before each task (task_prerun): Celery's Django fixup,
    then the project's receiver."""
    from celery.signals import task_prerun

    fixup.on_task_prerun(sender=task)
    task_prerun.send(sender=task, task_id="test", task=task, args=(), kwargs={})


def after_task(fixup, task):
    from celery.signals import task_postrun

    fixup.on_task_postrun(sender=task)
    task_postrun.send(sender=task, task_id="test", task=task, args=(), kwargs={}, retval=None)


def terminate_our_backends():
    """What a restart does to this process: every one of its connections is cut."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    pid = connection.connection.info.backend_pid
    with psycopg.connect(**{**params, "dbname": connection.settings_dict["NAME"]}) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_the_next_request_after_a_restart_reconnects_and_writes(acme):
    from lines.services import line_create

    line_create(workspace=acme, server_url="http://127.0.0.1:9", relay_password="x")
    api = api_client(acme.raw_key)
    assert api.get("/api/workspace").status_code == 200
    assert connection.connection is not None

    terminate_our_backends()

    request_started.send(sender=WSGIHandler)  # what gunicorn's handler does per request
    response = api.post(
        "/api/messages",
        {"message": "Hi", "recipientPhone": "+14155550102", "scheduledDate": "2099-01-01T00:00Z"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert Message.objects.filter(pk=response.json()["message"]["_id"]).exists()


def test_the_next_task_after_a_restart_reconnects_and_writes(acme):
    from celery.fixups.django import DjangoWorkerFixup

    from lines.services import line_create
    from messaging import services
    from messaging.tasks import reconcile_stuck_messages
    from tuco.celery import app

    line_create(workspace=acme, server_url="http://127.0.0.1:9", relay_password="x")
    assert reconcile_stuck_messages.run() == {"requeued": 0, "sent": 0, "failed": 0}

    terminate_our_backends()

    before_task(DjangoWorkerFixup(app), reconcile_stuck_messages)
    message = services.message_enqueue(
        workspace=acme, body="After the restart", recipient_phone="+14155550102"
    )
    assert reconcile_stuck_messages.run() == {"requeued": 0, "sent": 0, "failed": 0}
    assert Message.objects.filter(pk=message.pk).exists()


def test_a_worker_keeps_its_connection_between_tasks_until_it_is_too_old(acme):
    """One Postgres backend serves task after task (a new one costs a fork and cold
    caches on the server); one older than CONN_MAX_AGE is replaced."""
    import time

    from celery.fixups.django import DjangoWorkerFixup

    from messaging.tasks import reconcile_stuck_messages
    from tuco.celery import app

    fixup = DjangoWorkerFixup(app)
    backends = []
    for _ in range(5):
        before_task(fixup, reconcile_stuck_messages)
        reconcile_stuck_messages.run()
        backends.append(connection.connection.info.backend_pid)
        after_task(fixup, reconcile_stuck_messages)
    assert len(set(backends)) == 1

    connection.close_at = time.monotonic() - 1  # past CONN_MAX_AGE
    after_task(fixup, reconcile_stuck_messages)
    before_task(fixup, reconcile_stuck_messages)
    reconcile_stuck_messages.run()
    assert connection.connection.info.backend_pid != backends[0]
