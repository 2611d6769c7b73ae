"""A send while the cache (Redis) cannot be reached: the signed-in check asks the relay
instead of failing the message."""

import pytest
from django.core.cache import cache

from lines import safety

pytestmark = pytest.mark.django_db


class Unreachable(Exception):
    pass


def test_signed_in_check_probes_the_relay_when_the_cache_is_unreachable(sim, line, monkeypatch):
    def broken(*args, **kwargs):
        raise Unreachable("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(cache, "get", broken)
    monkeypatch.setattr(cache, "set", broken)
    monkeypatch.setattr(safety, "safety_enabled", lambda: True)

    assert safety.line_confirm_signed_in(line=line) is True
    assert sim.stats["by_endpoint"].get("server_info", 0) >= 1
