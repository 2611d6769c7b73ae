"""Fixtures for tests that talk to a relay: a simulator over real HTTP and lines on it.

Registered as a pytest plugin in tests/conftest.py, so every test can ask for them.
"""

import pytest

from lines.relay import clear_client_cache
from lines.services import line_create
from lines.simulator import RelaySimulator

PASSWORD = "sim-secret"


@pytest.fixture
def relay():
    simulator = RelaySimulator(password=PASSWORD, delivery_delay=0.05).start()
    yield simulator
    simulator.stop()
    clear_client_cache()


@pytest.fixture
def make_line(relay):
    """Create a line on the simulator; gaps are 0 unless a test sets them."""

    def make(workspace, *, simulator=None, **fields):
        fields.setdefault("check_gap_seconds", 0)
        fields.setdefault("device_gap_seconds", 0)
        fields.setdefault("relay_password", PASSWORD)
        return line_create(workspace=workspace, server_url=(simulator or relay).url, **fields)

    return make


def availability_requests(simulator) -> int:
    return simulator.stats["by_endpoint"].get("availability", 0)
