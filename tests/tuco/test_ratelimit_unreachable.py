"""Rate limits while Redis cannot be reached: the process's own buckets answer."""

import socket

from tuco.ratelimit import RedisBuckets


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_redis_falls_back_to_local_buckets():
    buckets = RedisBuckets(f"redis://127.0.0.1:{_closed_port()}/0")

    decisions = [buckets.take("tuco:rl:test:send", 2, 2 / 60) for _ in range(3)]

    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[-1].retry_after >= 1
