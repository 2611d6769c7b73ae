"""Run one function in several threads at once, for the concurrency tests (Postgres)."""

import threading
from contextlib import contextmanager

from django.db import connection, transaction


def run_in_threads(target, count) -> list:
    """Call target(index) in `count` threads released together; each slot of the
    answer holds what that call returned, or the exception it raised."""
    barrier = threading.Barrier(count)
    outcomes = [None] * count

    def worker(index):
        try:
            barrier.wait()
            outcomes[index] = target(index)
        except Exception as exc:  # noqa: BLE001 - the test looks at what each thread got
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@contextmanager
def held_by_another_transaction(take):
    """Run take() in a transaction on another thread's connection and keep that
    transaction open, with the locks take() got, until the block ends or the event
    it yields is set."""
    locked, release = threading.Event(), threading.Event()

    def holder(_index):
        with transaction.atomic():
            take()
            locked.set()
            release.wait(10)

    thread = threading.Thread(target=lambda: run_in_threads(holder, 1))
    thread.start()
    try:
        assert locked.wait(10), "the other transaction never got its locks"
        yield release
    finally:
        release.set()
        thread.join()
