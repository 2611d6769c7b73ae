"""The faults benchmark in its short form, against real processes (gunicorn, a Celery
worker, beat, relay simulators, Redis behind a TCP proxy): 200 messages, one worker
SIGKILL, the relays refusing sends for 5 s, Redis cut for 5 s. Nothing may be sent
twice or lost, no request may answer >= 500, a repeated key gets the first answer,
the worker rides out the Redis cut, and sends resume within a minute of each fault.

It runs whenever the suite runs on Postgres with Redis (as CI does), in about a
minute; otherwise it is skipped. The relays refuse their sends outright here (their
Private API helper disconnected) rather than time out: a send that timed out may
still land, so its row waits messaging.sending.SEND_SETTLE (150 s) before it may be
sent again, which the full benchmark (`python -m bench faults`) covers."""

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
        not DATABASE_URL.startswith(("postgres://", "postgresql://")),
        reason="the faults benchmark's short form needs Postgres: DATABASE_URL is not a "
        "postgres:// URL",
    ),
    pytest.mark.skipif(
        not REDIS_URL, reason="the faults benchmark's short form needs Redis: REDIS_URL is unset"
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
        "BENCH_FAULTS_RELAY_FAULT": "helper",
        # A row whose relay call the kill interrupted waits SEND_SETTLE: rare, allowed.
        "BENCH_FAULTS_DRAIN": "240",
        "BENCH_FAULTS_JSON": str(out),
    }
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench", "faults"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    row = json.loads(out.read_text())
    summary = json.dumps(row, indent=1)
    print(summary)  # shown with -s, and in the report of a failure
    assert row["once"] == row["count"] == 200, summary
    assert row["duplicated"] == 0, summary
    assert row["lost"] == 0, summary
    assert row["stuck"] == 0, summary
    assert row["http_5xx"] == 0, summary
    assert row["different_answers"] == 0, summary
    assert row["replays"] > 0, summary
    assert row["exits"] == 0, summary
    assert row["worker_kept"] == "yes", summary
    assert row["resume_max_s"] <= row["goal_resume_s"], summary
