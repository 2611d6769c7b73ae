"""Work queued after a commit (a dispatch run, the wake flag) may fail when the cache
or the broker is down: the committed write stands and nothing raises."""

import pytest

from messaging import services, tasks
from messaging.models import Message
from tuco.celery import app as celery_app


def _down(*args, **kwargs):
    raise ConnectionError("connection refused")


@pytest.fixture
def queued_for_real(monkeypatch):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)


def test_a_send_is_accepted_while_the_cache_and_the_broker_are_down(
    api, acme, make_line, queued_for_real, monkeypatch, django_capture_on_commit_callbacks
):
    make_line(acme)
    monkeypatch.setattr(services.cache, "add", _down)
    monkeypatch.setattr(tasks.dispatch_messages, "apply_async", _down)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(
            "/api/messages", {"recipientPhone": "+14155550102", "message": "Hi"}, format="json"
        )
    assert response.status_code == 201
    assert callbacks, "the dispatch run is queued after the commit"
    message = Message.objects.get(pk=response.json()["message"]["_id"])
    assert message.status == Message.Status.PENDING  # the periodic dispatcher takes it


def test_without_the_cache_every_writer_queues_its_run(
    acme, queued_for_real, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(services.cache, "add", _down)
    monkeypatch.setattr(
        tasks.dispatch_messages, "apply_async", lambda args, countdown: queued.append(args)
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.message_enqueue(workspace=acme, body="Hi", recipient_phone="+14155550102")
        services.message_enqueue(workspace=acme, body="Hi", recipient_phone="+14155550104")
    assert len(queued) == 2


def test_a_dispatch_run_starts_while_the_cache_is_down(monkeypatch):
    monkeypatch.setattr(services.cache, "delete", _down)
    services.dispatch_wake_clear()
