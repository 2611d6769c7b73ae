"""Run one function in several threads at once, for the concurrency tests (Postgres)."""

import threading

from django.db import connection


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
