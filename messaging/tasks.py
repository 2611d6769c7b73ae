import logging
import time

from celery import shared_task

from messaging import webhook_delivery
from messaging.dispatch import BATCH_SIZE, dispatch_due
from messaging.sending import (
    fallback_sms_send,
    message_send,
    messages_reconcile_stuck,
    messages_send,
)
from messaging.services import dispatch_wake_clear

logger = logging.getLogger(__name__)

# The periodic dispatcher keeps claiming batches for about this long, so one run
# drains a backlog instead of taking one batch per beat.
DISPATCH_BUDGET_SECONDS = 4.0


@shared_task
def dispatch_messages(message_ids):
    """Dispatch freshly queued messages now.

    Claims every due row, not only `message_ids`: one run takes the rows of all
    the requests that were written while it waited in the queue.
    """
    dispatch_wake_clear()
    return _drain()


@shared_task
def dispatch_due_messages():
    return _drain()


def _drain() -> int:
    deadline = time.monotonic() + DISPATCH_BUDGET_SECONDS
    total = 0
    while time.monotonic() < deadline:
        claimed = dispatch_due(limit=BATCH_SIZE).claimed
        total += claimed
        if claimed < BATCH_SIZE:
            break
    return total


# The send tasks go back to the queue when their worker process dies under them
# (killed, out of memory): a run finds the rows it cannot claim and skips them, and
# the ones its dead predecessor claimed come back through their leases.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_message(message_id):
    """One row: what earlier versions queued (such tasks may still wait in the broker
    during an upgrade); the dispatcher now queues send_messages."""
    return message_send(message_id=message_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_messages(message_ids):
    """Send claimed rows together (one claim, shared lookups). Should the run fail
    unexpectedly, the rows it had not claimed yet are sent one by one; the rows it
    had claimed stay `sending` for the sweeper, which settles them."""
    try:
        return messages_send(message_ids=message_ids)
    except Exception:
        logger.exception("Sending messages %s failed; trying them one by one", message_ids)
    outcomes = {}
    for message_id in message_ids:
        try:
            outcomes[message_id] = message_send(message_id=message_id)
        except Exception:
            logger.exception("Sending message %s failed", message_id)
            outcomes[message_id] = "error"
    return outcomes


@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_fallback_sms(message_id):
    return fallback_sms_send(message_id=message_id)


@shared_task
def mark_undelivered_messages():
    from messaging.safety import lines_hold_unconfirmed, messages_mark_undelivered

    marked = messages_mark_undelivered()
    lines_hold_unconfirmed()
    return marked


@shared_task
def reconcile_stuck_messages():
    return messages_reconcile_stuck()


# Webhooks out. Their names predate this module: beat rows and queued tasks carry them.


@shared_task(name="messaging.inbound_tasks.webhook_deliver")
def webhook_deliver(delivery_id: str) -> str | None:
    """Deliver one outbox row now, if it is still due and no other worker holds it."""
    if not webhook_delivery.webhook_deliveries_claim(delivery_ids=[delivery_id], limit=1):
        return None
    return webhook_delivery.webhook_delivery_attempt(delivery_id=delivery_id)


@shared_task(name="messaging.inbound_tasks.webhook_deliver_due")
def webhook_deliver_due() -> int:
    """Deliver every due delivery (first tries that were lost, and retries)."""
    done = 0
    while True:
        ids = webhook_delivery.webhook_deliveries_claim(limit=webhook_delivery.CLAIM_BATCH)
        for delivery_id in ids:
            try:
                webhook_delivery.webhook_delivery_attempt(delivery_id=delivery_id)
            except Exception:
                # The claim's lease brings the row back later.
                logger.exception("Webhook delivery %s failed unexpectedly", delivery_id)
        done += len(ids)
        if len(ids) < webhook_delivery.CLAIM_BATCH:
            return done
