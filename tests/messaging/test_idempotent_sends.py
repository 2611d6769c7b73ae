"""POST /api/messages under an Idempotency-Key: the stored answer commits with the
message row, so a repeat replays it whatever failed after the commit, and a failure
before the commit leaves neither behind."""

from unittest import mock

import pytest
from django.conf import settings
from django.db import transaction
from rest_framework.renderers import JSONRenderer

from lines.services import line_create
from messaging import services
from messaging.models import Message
from tests import threads
from tests.conftest import api_client
from tuco.models import IdempotencyRecord

# Scheduled far ahead: nothing is dispatched when a test commits for real.
BODY = {
    "message": "Hi",
    "recipientPhone": "+14155550102",
    "scheduledDate": "2099-10-15T14:30:00Z",
}


@pytest.fixture
def active_line(acme):
    return line_create(workspace=acme, server_url="http://127.0.0.1:9", relay_password="x")


def post(client, key="k1", body=BODY):
    return client.post("/api/messages", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.django_db
def test_a_response_lost_after_the_commit_is_replayed(api, active_line):
    real_render = JSONRenderer.render
    answers = []

    def render_once_broken(renderer, data, *args, **kwargs):
        # The test client renders request bodies with it too: break the first answer.
        if isinstance(data, dict) and "success" in data:
            answers.append(data)
            if len(answers) == 1:
                raise ConnectionResetError("client went away")
        return real_render(renderer, data, *args, **kwargs)

    with mock.patch.object(JSONRenderer, "render", render_once_broken):
        first = post(api)
        again = post(api)

    assert first.status_code == 500

    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    message = Message.objects.get()
    assert again.json()["message"]["_id"] == message.pk
    assert again.json() == answers[0]


@pytest.mark.django_db(transaction=True)
def test_an_on_commit_failure_keeps_the_committed_answer(acme, active_line):
    api = api_client(acme.raw_key)
    api.raise_request_exception = False
    real_enqueue = services.message_enqueue

    def enqueue_then_fail_after_commit(**kwargs):
        message = real_enqueue(**kwargs)

        def broken_hook():
            raise RuntimeError("broker down")

        transaction.on_commit(broken_hook)
        return message

    with mock.patch.object(services, "message_enqueue", enqueue_then_fail_after_commit):
        first = post(api)
    assert first.status_code == 500
    assert Message.objects.count() == 1

    again = post(api)
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["message"]["_id"] == Message.objects.get().pk
    assert IdempotencyRecord.objects.get().completed


@pytest.mark.django_db(transaction=True)
def test_a_failure_before_the_commit_saves_nothing_and_frees_the_key(acme, active_line):
    api = api_client(acme.raw_key)
    api.raise_request_exception = False
    with mock.patch(
        "messaging.api.messages.message_document", side_effect=RuntimeError("bug after the insert")
    ):
        first = post(api)
    assert first.status_code == 500
    assert Message.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0

    again = post(api)
    assert again.status_code == 201
    assert not again.has_header("Idempotent-Replayed")
    assert Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_work_whose_key_was_taken_over_meanwhile_does_not_commit(acme, active_line):
    """A request that ran past ABANDONED_AFTER lost its key to a repeat: its own
    work must not commit beside the repeat's."""
    api = api_client(acme.raw_key)
    real_enqueue = services.message_enqueue

    def enqueue_while_the_key_is_taken_over(**kwargs):
        IdempotencyRecord.objects.all().delete()
        return real_enqueue(**kwargs)

    with mock.patch.object(services, "message_enqueue", enqueue_while_the_key_is_taken_over):
        response = post(api)
    assert response.status_code == 409
    assert response.json()["code"] == "IDEMPOTENCY_IN_PROGRESS"
    assert Message.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.IS_POSTGRES, reason="needs Postgres (set DATABASE_URL)")
def test_concurrent_posts_with_one_key_make_one_message(acme, active_line):
    def send(index):
        response = post(api_client(acme.raw_key), key="same")
        return response.status_code, response.json()

    outcomes = threads.run_in_threads(send, 6)
    assert [o for o in outcomes if isinstance(o, Exception)] == []
    assert Message.objects.count() == 1
    created = [body for status, body in outcomes if status == 201]
    assert created, outcomes
    assert all(body["message"]["_id"] == Message.objects.get().pk for body in created)
    assert {status for status, _ in outcomes} <= {201, 409}
    for status, body in outcomes:
        if status == 409:
            assert body["code"] == "IDEMPOTENCY_IN_PROGRESS"
