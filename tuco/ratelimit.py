"""Per-workspace token buckets, one per endpoint group.

With Redis the bucket lives in Redis and is updated by one Lua script, so the
check-and-take is atomic across every web process and machine, and the clock
is Redis's own (no drift between machines). Without Redis (the demo) a
process-local bucket under a lock does the same for a single web process.
While Redis cannot be reached, each process falls back to such local buckets (a
limit then holds per process rather than across them) instead of failing the
request: a broker outage must not turn every API call into a 500.
"""

import logging
import math
import threading
import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0

# KEYS[1] bucket key; ARGV: capacity, refill per second, tokens to take.
# Returns {allowed (0/1), retry_after_ms}.
_LUA = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = capacity
  ts = now
end
local elapsed = math.max(0, now - ts)
tokens = math.min(capacity, tokens + elapsed * rate / 1000)
local allowed = 0
local retry_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_ms = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 1000)
return {allowed, retry_ms}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int  # whole seconds, 0 when allowed


def limit_for(group: str) -> int:
    limits = settings.RATE_LIMITS
    return int(limits.get(group, limits["default"]))


class RedisBuckets:
    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self.script = self.client.register_script(_LUA)
        self.unreachable = (redis.ConnectionError, redis.TimeoutError)
        self.fallback = LocalBuckets()

    def take(self, key: str, capacity: int, rate: float) -> Decision:
        try:
            allowed, retry_ms = self.script(keys=[key], args=[capacity, rate, 1])
        except self.unreachable as exc:
            logger.warning("Rate limits: Redis unreachable (%s); using this process's buckets", exc)
            return self.fallback.take(key, capacity, rate)
        return Decision(bool(allowed), 0 if allowed else max(1, math.ceil(int(retry_ms) / 1000)))

    def reset(self, prefix: str) -> None:
        for key in self.client.scan_iter(match=prefix + "*"):
            self.client.delete(key)


class LocalBuckets:
    def __init__(self):
        self.lock = threading.Lock()
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, capacity: int, rate: float) -> Decision:
        now = time.monotonic()
        with self.lock:
            tokens, ts = self.buckets.get(key, (float(capacity), now))
            tokens = min(capacity, tokens + (now - ts) * rate)
            if tokens >= 1:
                self.buckets[key] = (tokens - 1, now)
                return Decision(True, 0)
            self.buckets[key] = (tokens, now)
            return Decision(False, max(1, math.ceil((1 - tokens) / rate)))

    def reset(self, prefix: str) -> None:
        with self.lock:
            for key in [k for k in self.buckets if k.startswith(prefix)]:
                del self.buckets[key]


@cache
def _store():
    if settings.REDIS_URL:
        return RedisBuckets(settings.REDIS_URL)
    return LocalBuckets()


KEY_PREFIX = "tuco:rl:"


def take(workspace_id: str, group: str) -> Decision:
    if not settings.RATE_LIMITS_ENABLED:
        return Decision(True, 0)
    capacity = limit_for(group)
    return _store().take(f"{KEY_PREFIX}{workspace_id}:{group}", capacity, capacity / WINDOW_SECONDS)


def take_per_minute(key: str, per_minute: int) -> Decision:
    """One token from the bucket `key` (not a workspace's endpoint group: e.g. the
    calls of one API tool), `per_minute` tokens a minute."""
    if not settings.RATE_LIMITS_ENABLED:
        return Decision(True, 0)
    capacity = max(1, per_minute)
    return _store().take(f"{KEY_PREFIX}{key}", capacity, capacity / WINDOW_SECONDS)


def reset_all() -> None:
    """Forget every bucket (tests)."""
    _store().reset(KEY_PREFIX)
