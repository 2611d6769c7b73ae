"""The faults benchmark in its short form: 200 messages, one worker kill, 5 s relay
and Redis outages, against real processes. Needs Postgres and Redis (CI sets both).

It takes about 4 minutes (a send task queued while the broker is cut is lost, and its
rows wait messaging.leases.QUEUED_LEASE, 2 minutes, for the sweeper), so it runs only
when asked: TUCO_FAULTS_TEST=1 make test."""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("TUCO_FAULTS_TEST") != "1",
        reason="the faults benchmark's short form takes minutes: TUCO_FAULTS_TEST=1 runs it",
    ),
    pytest.mark.skipif(
        not DATABASE_URL.startswith(("postgres://", "postgresql://")),
        reason="the faults benchmark needs Postgres: DATABASE_URL is not a postgres:// URL",
    ),
    pytest.mark.skipif(
        not REDIS_URL, reason="the faults benchmark needs Redis: REDIS_URL is unset"
    ),
]


def test_faults_short_form(tmp_path):
    # A database of its own (created by the benchmark), beside the suite's.
    parts = urlsplit(DATABASE_URL)
    database = parts._replace(path=parts.path.rstrip("/") + "_faults").geturl()
    out = tmp_path / "faults.json"
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "BENCH_FAULTS_MESSAGES": "200",
        "BENCH_FAULTS_KILLS": "1",
        "BENCH_FAULTS_OUTAGE": "5",
        "BENCH_FAULTS_GAP": "3",
        "BENCH_FAULTS_DRAIN": "300",
        "BENCH_FAULTS_JSON": str(out),
    }
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench", "faults"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    row = json.loads(out.read_text())
    summary = json.dumps(row, indent=1)
    assert row["duplicated"] == 0, summary
    assert row["lost"] == 0, summary
    assert row["stuck"] == 0, summary
    assert row["http_5xx"] == 0, summary
    assert row["different_answers"] == 0, summary
    assert row["replays"] > 0, summary
