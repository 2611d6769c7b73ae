import time

from celery import shared_task

from messaging.dispatch import BATCH_SIZE, dispatch_due
from messaging.sending import fallback_sms_send, message_send, messages_reconcile_stuck

# The periodic dispatcher keeps claiming batches for about this long, so one run
# drains a backlog instead of taking one batch per beat.
DISPATCH_BUDGET_SECONDS = 4.0


@shared_task
def dispatch_messages(message_ids):
    """Dispatch freshly queued messages now.

    Claims a whole batch of due rows, not only `message_ids`: under load one run
    takes the rows of many requests at once, and the runs queued for rows already
    taken find nothing to do.
    """
    return dispatch_due(limit=BATCH_SIZE).claimed


@shared_task
def dispatch_due_messages():
    deadline = time.monotonic() + DISPATCH_BUDGET_SECONDS
    total = 0
    while time.monotonic() < deadline:
        claimed = dispatch_due(limit=BATCH_SIZE).claimed
        total += claimed
        if claimed < BATCH_SIZE:
            break
    return total


@shared_task(acks_late=True)
def send_message(message_id):
    return message_send(message_id=message_id)


@shared_task(acks_late=True)
def send_fallback_sms(message_id):
    return fallback_sms_send(message_id=message_id)


@shared_task
def reconcile_stuck_messages():
    return messages_reconcile_stuck()
