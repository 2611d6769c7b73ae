"""Sending end to end: 10,000 `POST /api/messages` from 50 concurrent clients to a real
gunicorn server, sent by a real Celery worker (Redis broker) through 50 lines on a
relay simulator process, with Postgres underneath.

Reported: messages per second from the first POST to the last `sent`, POST latency
(p50 / p95) under 50 clients, and the simulator's raw request rate measured in the
same run. Gaps are 0 and caps / rate limits are raised, so the pipeline's own cost
is what is measured. Every recipient is new, so each message also takes one
availability check on a relay. The simulator drops its webhooks (delivery receipts)
unless BENCH_WEBHOOKS=1, so the web server serves only the sends.

Environment: DATABASE_URL (Postgres, required), REDIS_URL (default db 3),
BENCH_MESSAGES (10000), BENCH_CLIENTS (50), BENCH_LINES (50), BENCH_WORKERS (8 worker
processes, as in production), BENCH_WEB_WORKERS (4 gunicorn processes of 8 threads, as in
production), BENCH_QUEUED (2000).
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

from bench import _processes as children

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "10000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
LINES = int(os.environ.get("BENCH_LINES", "50"))
# Worker processes: sends mostly wait on the relay and on commits, so production
# runs several per core (README: --concurrency 8).
WORKERS = int(os.environ.get("BENCH_WORKERS", "8"))
# gunicorn processes (8 threads each); production runs 4 (README).
WEB_WORKERS = int(os.environ.get("BENCH_WEB_WORKERS", "4"))
PASSWORD = "bench-relay"
DEADLINE_SECONDS = int(os.environ.get("BENCH_DEADLINE", "900"))
# Rows written straight into the outbox (as campaigns do): the worker's side alone.
QUEUED = int(os.environ.get("BENCH_QUEUED", "2000"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _env(web_port: int) -> dict:
    env = dict(os.environ)
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/3")
    env.update(
        DJANGO_SETTINGS_MODULE="tuco.settings",
        CELERY_TASK_ALWAYS_EAGER="false",
        RATE_LIMIT_SEND="1000000",
        RATE_LIMIT_DEFAULT="1000000",
        LOG_LEVEL="WARNING",
        SITE_URL=f"http://127.0.0.1:{web_port}",
        PYTHONUNBUFFERED="1",
    )
    return env


def _start(cmd: list[str], env: dict, name: str):
    return children.start(cmd, env, f"/tmp/bench-messaging-{name}.log")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _post_all(base: str, key: str, total: int, clients: int) -> tuple[list[float], int, float]:
    """`total` POSTs from `clients` threads; returns latencies (ms), failures, start time."""
    latencies: list[float] = []
    failures = []
    counter = iter(range(total))
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client():
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        barrier.wait()
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            body = {
                "message": "Hi {firstName|there}, this is message " + str(index),
                # Even last digit: on iMessage in the simulator's registry.
                "recipientPhone": f"+1415{2000000 + index * 2:07d}",
                "batchId": "bench",
            }
            started = time.perf_counter()
            response = session.post(f"{base}/api/messages", json=body, timeout=60)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                if response.status_code != 201:
                    failures.append(response.status_code)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return latencies, len(failures), started


def _wait_finished(rows_of, total: int) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if rows_of.exclude(status__in=("pending", "scheduled", "sending")).count() >= total:
            return
        time.sleep(0.5)


def _queued_phase(workspace, total: int) -> dict:
    """Bulk-written pending rows, dispatched by the periodic task and sent by the
    worker: the send pipeline without the web server in front of it."""
    from django.db.models import Max

    from messaging.models import Message
    from messaging.tasks import dispatch_due_messages

    batch = f"queued-{int(time.time())}"
    Message.objects.bulk_create(
        [
            Message(
                workspace=workspace,
                body=f"Queued {index}",
                rendered_body="",
                recipient_phone=f"+1628{2000000 + index * 2:07d}",
                batch_id=batch,
            )
            for index in range(total)
        ],
        batch_size=1000,
    )
    rows_of = Message.objects.filter(workspace=workspace, batch_id=batch)
    started = time.perf_counter()
    stop = threading.Event()

    def beat():
        dispatch_due_messages.delay()
        while not stop.wait(3):
            dispatch_due_messages.delay()

    threading.Thread(target=beat, daemon=True).start()
    _wait_finished(rows_of, total)
    stop.set()
    seconds = time.perf_counter() - started
    sent = rows_of.filter(status__in=("sent", "delivered", "read")).count()
    last = rows_of.aggregate(last=Max("sent_at"))["last"]
    return {
        "case": f"queued rows to sent, {LINES} lines, celery -c {WORKERS}",
        "count": sent,
        "seconds": seconds,
        "per_second": sent / seconds if seconds else 0.0,
        "note": f"no web requests; last sent at {last:%H:%M:%S}" if last else "none sent",
    }


def run() -> list[dict]:
    from django.db.models import Max, Min

    from lines.models import Line
    from lines.services import line_create
    from lines.simulator import measure_raw_rate
    from messaging.models import Message
    from tuco.models import Workspace
    from tuco.services import workspace_create

    web_port, relay_port = _free_port(), _free_port()
    env = _env(web_port)
    python = sys.executable
    relay_cmd = [python, "manage.py", "relay_simulator", "--port", str(relay_port),
                 "--password", PASSWORD, "--delivery-delay", "0.5"]  # fmt: skip
    if os.environ.get("BENCH_WEBHOOKS") != "1":
        relay_cmd.append("--drop-webhooks")
    bin_dir = Path(python).parent
    processes = {
        "relay": _start(relay_cmd, env, "relay"),
        "web": _start(
            [
                str(bin_dir / "gunicorn"),
                "tuco.wsgi",
                "-w",
                str(WEB_WORKERS),
                "-k",
                "gthread",
                "--threads",
                "8",
                "-b",
                f"127.0.0.1:{web_port}",
                "--log-level",
                "warning",
            ],
            env,
            "web",
        ),  # fmt: skip
        "worker": _start(children.celery_worker_command(WORKERS), env, "worker"),
    }
    relay_url = f"http://127.0.0.1:{relay_port}"
    base = f"http://127.0.0.1:{web_port}"
    workspace = None
    rows = []
    try:
        _wait_http(f"{relay_url}/api/v1/ping")
        _wait_http(f"{base}/api/workspace")
        workspace, key = workspace_create(
            name=f"Bench messaging {int(time.time())}",
            owner_email=f"bench-{int(time.time() * 1000)}@bench.test",
            password="bench-password",
        )
        for index in range(LINES):
            line_create(
                workspace=workspace,
                server_url=relay_url,
                relay_password=PASSWORD,
                first_name=f"Line {index}",
                device_gap_seconds=0,
                contact_gap_seconds=0,
                check_gap_seconds=0,
                daily_total_messages_limit=1_000_000,
                daily_new_conversations_limit=1_000_000,
                daily_availability_checks_limit=1_000_000,
            )
        Line.objects.filter(workspace=workspace).update(health_status=Line.Health.HEALTHY)
        requests.post(f"{relay_url}/sim/reset", timeout=5)

        # Beat's job: a periodic sweep catches anything that had to wait.
        stop_beat = threading.Event()

        def beat():
            from messaging.tasks import dispatch_due_messages

            while not stop_beat.wait(3):
                dispatch_due_messages.delay()

        beat_thread = threading.Thread(target=beat, daemon=True)
        beat_thread.start()

        latencies, failures, started_perf = _post_all(base, key, MESSAGES, CLIENTS)
        post_seconds = time.perf_counter() - started_perf
        rows.append(
            {
                "case": f"POST /api/messages, {CLIENTS} clients",
                "count": len(latencies),
                "seconds": post_seconds,
                "per_second": len(latencies) / post_seconds,
                "p50_ms": _percentile(latencies, 0.50),
                "p95_ms": _percentile(latencies, 0.95),
                "note": f"{failures} non-201, mean {statistics.fmean(latencies):.1f} ms",
            }
        )

        done_statuses = ("sent", "delivered", "read")
        rows_of = Message.objects.filter(workspace=workspace, batch_id="bench")
        _wait_finished(rows_of, MESSAGES)
        stop_beat.set()
        span = rows_of.aggregate(first=Min("created_at"), last=Max("sent_at"))
        sent = rows_of.filter(status__in=done_statuses).count()
        by_status = {}
        for status in rows_of.values_list("status", flat=True):
            by_status[status] = by_status.get(status, 0) + 1
        seconds = (span["last"] - span["first"]).total_seconds() if span["last"] else float("nan")
        stats = requests.get(f"{relay_url}/sim/stats", timeout=5).json().get("data", {})
        rows.append(
            {
                "case": f"POST to sent, {LINES} lines, celery -c {WORKERS}",
                "count": sent,
                "seconds": seconds,
                "per_second": sent / seconds if sent else 0.0,
                "note": (
                    ", ".join(f"{k} {v}" for k, v in sorted(by_status.items()))
                    + f"; relay requests {stats.get('total')}"
                    + f" ({stats.get('by_endpoint')})"
                ),
            }
        )

        if QUEUED:
            rows.append(_queued_phase(workspace, QUEUED))

        raw_n = 5000
        started = time.perf_counter()
        raw_rate = measure_raw_rate(relay_url, PASSWORD, raw_n, concurrency=32)
        rows.append(
            {
                "case": "simulator raw rate, 32 threads",
                "count": raw_n,
                "seconds": time.perf_counter() - started,
                "per_second": raw_rate,
                "note": "bare HTTP requests to the same simulator process",
            }
        )
    finally:
        for process in processes.values():
            children.stop(process)
        if workspace is not None:
            Message.objects.filter(workspace=workspace).delete()
            Workspace.objects.filter(pk=workspace.pk).delete()
    return rows
