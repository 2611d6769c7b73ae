"""Opaque, time-ordered object ids.

24 hex characters in the ObjectId layout (4-byte seconds, 5 random bytes,
3-byte counter), so ids from the published API look familiar and new rows land
at the right end of the primary-key index instead of at random places.
"""

import itertools
import os
import threading
import time

_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_lock = threading.Lock()
_process_random = os.urandom(5)
_pid = os.getpid()


def new_id() -> str:
    global _process_random, _pid
    with _lock:
        if os.getpid() != _pid:  # forked worker: do not share the parent's sequence
            _pid = os.getpid()
            _process_random = os.urandom(5)
        count = next(_counter) & 0xFFFFFF
    return (int(time.time()).to_bytes(4, "big") + _process_random + count.to_bytes(3, "big")).hex()


ID_LENGTH = 24


def looks_like_id(value) -> bool:
    return (
        isinstance(value, str)
        and len(value) == ID_LENGTH
        and all(c in "0123456789abcdef" for c in value)
    )
