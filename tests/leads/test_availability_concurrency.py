"""The engine's caps and gaps under concurrent callers, against the simulator over
HTTP and real Postgres (row locks and conditional updates across connections)."""

import pytest
from django.conf import settings

from leads.availability import AvailabilityQuotaExhausted, availability_check_address
from lines.services import usage_for
from tests.lines.relay_fixtures import availability_requests
from tests.threads import run_in_threads

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.IS_POSTGRES, reason="needs Postgres (set DATABASE_URL)"),
]

THREADS = 16


def check_in_threads(workspace, count=THREADS) -> list:
    """Each thread checks its own address (so no answer comes from the cache)."""

    def check(index):
        address = f"+1415555{1000 + index:04d}"
        return availability_check_address(workspace=workspace, address=address)

    return run_in_threads(check, count)


def test_the_daily_cap_holds_through_the_engine(acme, relay, make_line):
    line = make_line(acme, daily_availability_checks_limit=10, check_gap_seconds=0)
    outcomes = check_in_threads(acme)
    answered = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(answered) == 10
    assert all(o.status in ("available", "unavailable") for o in answered)
    assert len(refused) == THREADS - 10
    assert all(isinstance(o, AvailabilityQuotaExhausted) for o in refused)
    assert availability_requests(relay) == 10
    assert usage_for(line=line).availability_checks_count == 10


# Arrival at the relay trails the claim by a little network and scheduling time,
# which differs per request; the claims themselves are exactly a gap apart.
ARRIVAL_JITTER = 0.1


def test_the_gap_holds_through_the_engine(acme, relay, make_line):
    # The cap keeps the test short: 5 checks a second apart, the others refused.
    make_line(acme, daily_availability_checks_limit=5, check_gap_seconds=1)
    outcomes = check_in_threads(acme)
    assert sum(1 for o in outcomes if isinstance(o, AvailabilityQuotaExhausted)) == THREADS - 5
    arrivals = [at for at, _ in relay.request_log("availability")]
    assert len(arrivals) == 5
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert all(gap >= 1 - ARRIVAL_JITTER for gap in gaps), gaps
