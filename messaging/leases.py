"""Leases on `sending` rows: who holds a row, and until when.

A row the dispatcher moves to `sending` is held for QUEUED_LEASE by the send task
it queued (messaging.sending.messages_queue_send; a task the broker does not take
puts its rows back to `pending` at once). The run of that task that claims the row
holds it for LEASE and renews it every LEASE_RENEW_EVERY from a thread of its own
(LeaseKeeper), so a relay call that takes minutes keeps it, while a worker that
dies loses it within LEASE. The sweeper (messaging.sending.messages_reconcile_stuck,
on the beat every SWEEP_EVERY) takes back every row whose lease ran out: a row no
run claimed gets a new send task, a claimed one is reconciled with the relay before
anything is sent again.

Losing a lease is never a duplicate: the sweeper gives the row a claim of its own,
and a run only calls the channel while the row still carries that run's claim; of
two tasks queued for one unclaimed row, the first claims it and the other skips it.

Worst cases, from the fault to the row being in a send task's hands again (plus the
time that task waits in the broker), with the beat running:
- a worker killed while running a send task: its lease was renewed at most
  LEASE_RENEW_EVERY before, so it runs out within LEASE, the next sweep takes the
  row back within SWEEP_EVERY (40 s), and the dispatcher, every 3 s, queues it again:
  about 45 s. A row whose relay call had started waits for the relay's answer to
  settle instead (messaging.sending.SEND_SETTLE) when the relay has no record of it.
- a send task lost after it was queued (killed with the worker that had reserved
  it, or dropped with the broker's data): QUEUED_LEASE after the dispatch plus
  SWEEP_EVERY, 40 s, then a new task.
- a send task the broker would not take: none; its rows are `pending` again at once,
  and go out once the broker (and with it the beat's dispatcher) is back.
A send task that merely waits longer than QUEUED_LEASE behind others costs one more
task for its rows, which finds them claimed and skips them.
"""

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from messaging.models import Message

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=30)
LEASE_RENEW_EVERY = timedelta(seconds=10)
# The sweeper's period (messaging.apps): LEASE + SWEEP_EVERY is how long a dead
# worker's rows wait before they are taken back, well under a minute.
SWEEP_EVERY = timedelta(seconds=10)
# How long a queued send task has to claim its rows before the sweeper queues
# another: a task lost with a killed worker (or a broker that lost its data) costs
# its rows this long plus SWEEP_EVERY.
QUEUED_LEASE = timedelta(seconds=30)
# A run stops renewing after this long, whatever it is doing (a hung run): its
# rows go back to the sweeper, which is safe at any time.
LEASE_MAX = timedelta(hours=2)


def lease_renew(*, message_ids: Iterable[str], claimed_at: datetime) -> int:
    """Extend the lease of the rows that are still `sending` under this claim."""
    return Message.objects.filter(
        pk__in=list(message_ids), status=Message.Status.SENDING, send_claimed_at=claimed_at
    ).update(lease_expires_at=timezone.now() + LEASE)


class LeaseKeeper:
    """While the `with` block runs, renew the lease of a run's claimed rows every
    LEASE_RENEW_EVERY, from a thread with its own database connection."""

    def __init__(self, message_ids: Iterable[str], claimed_at: datetime):
        self.message_ids = list(message_ids)
        self.claimed_at = claimed_at
        self.started = timezone.now()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "LeaseKeeper":
        if self.message_ids:
            self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(LEASE_RENEW_EVERY.total_seconds()):
                if timezone.now() - self.started > LEASE_MAX:
                    logger.warning("Send run of %s stopped renewing its lease", self.message_ids)
                    return
                try:
                    lease_renew(message_ids=self.message_ids, claimed_at=self.claimed_at)
                except Exception:
                    # The next renewal may get through; if none does, the sweeper
                    # takes the rows back, which is safe.
                    logger.warning(
                        "Could not renew the lease of %s", self.message_ids, exc_info=True
                    )
        finally:
            connection.close()
