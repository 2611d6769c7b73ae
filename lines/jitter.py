"""Gap jitter: device and contact gaps vary randomly, so sends do not tick like a
clock.

A gap is scaled by a factor drawn uniformly from [1 - p, 1 + p] (p the workspace's
`gap_jitter_percent`). The draw is keyed by what the gap runs from (the line or the
recipient, and the instant of the send that started it): the dispatcher looks at a
waiting row several times before its gap ends, and a fresh draw each time would
let the shortest draw win, so the gap would in effect be the lower bound. Keyed,
one gap has one length however often, and by whichever worker, it is looked at,
with no state to store. Different sends start different gaps, so their lengths
spread over the whole range.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta


def jitter_fraction(*key) -> float:
    """A number in [0, 1), uniform over keys, the same for the same key."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def jittered_gap(seconds: int, percent: int, *key) -> timedelta:
    """`seconds` scaled by a factor in [1 - percent/100, 1 + percent/100], fixed by key."""
    if seconds <= 0 or percent <= 0:
        return timedelta(seconds=max(seconds, 0))
    factor = 1 + (percent / 100) * (2 * jitter_fraction(*key) - 1)
    return timedelta(seconds=seconds * factor)


def gap_end(last: datetime, seconds: int, percent: int, *key) -> datetime:
    """When a gap of about `seconds` that began at `last` ends (keyed by `key` and `last`)."""
    return last + jittered_gap(seconds, percent, *key, last.isoformat())
