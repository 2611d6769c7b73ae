"""Sending end to end against a real gunicorn server (4 processes x 8 threads, gthread,
as in production), a real Celery worker (Redis broker) and a relay simulator process,
with Postgres underneath. The simulator drops its webhooks (delivery receipts) unless
BENCH_WEBHOOKS=1, so the web server serves only the requests of the benchmark.

BENCH_MODE=open (the default): an open loop. `POST /api/messages` arrive at a fixed
rate (BENCH_RATE, 50 a second) for BENCH_SECONDS (60), spread evenly over
BENCH_WORKSPACES (50) workspaces of one line each, so each workspace sends one message a
second and stays within its send rate limit (60 a minute); rate limits are on, at their
defaults. Interleaved with them, an authenticated no-op `GET /api/workspace` at the same
rate, the floor under any API request. Every request starts on its schedule whatever
earlier ones are doing (a thread pool large enough that a slow answer never delays the
next start), and latency is measured from the scheduled start, so a stall shows in the
figures rather than thinning the load. The same load runs for BENCH_WARMUP (10) seconds
before the measured ones (fresh server processes open their database connections and
load their code on their first requests). Reported: p50 / p95 / p99 and errors of both;
the goal is POST p95 under 50 ms. Beside it, the worker's side: how long each message
took from its POST to `sent`.

BENCH_PACING says how the lines send: `default`, lines with the product's default gaps
and daily caps (each sends one message every 30 s or so, as a user's lines do, and the
worker schedules the rest); `off`, no gaps and caps far above what the run sends, so
the worker sends every message at once (50 sends a second: more than 50 lines may send
in a day, a stress run); `both` (the default) runs one after the other, each with
workspaces of its own.

BENCH_MODE=closed: BENCH_MESSAGES (10000) `POST /api/messages` from BENCH_CLIENTS (50)
clients as fast as they are answered, into one workspace of BENCH_LINES (50) unpaced
lines, rate limits raised; then rows written straight into the outbox (BENCH_QUEUED,
2000) and the simulator's raw request rate. Every recipient is new, so each message
also takes one availability check on a relay.

Environment: DATABASE_URL (Postgres, required), REDIS_URL (default db 3), BENCH_MODE,
BENCH_PACING, BENCH_RATE, BENCH_SECONDS, BENCH_WARMUP, BENCH_WORKSPACES,
BENCH_CONCURRENCY (open-loop client threads, 256), BENCH_MESSAGES, BENCH_CLIENTS,
BENCH_LINES, BENCH_QUEUED, BENCH_WORKERS (8 worker processes, as in production),
BENCH_WEB_WORKERS (4 gunicorn processes, as in production), BENCH_WEB_THREADS (8
threads each, as in production).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import requests

from bench import _processes as children
from bench import _seed

MODE = os.environ.get("BENCH_MODE", "open")
RATE = Fraction(os.environ.get("BENCH_RATE", "50"))
SECONDS = Fraction(os.environ.get("BENCH_SECONDS", "60"))
WARMUP = Fraction(os.environ.get("BENCH_WARMUP", "10"))
PACING = os.environ.get("BENCH_PACING", "both")
WORKSPACES = int(os.environ.get("BENCH_WORKSPACES", "50"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "256"))
GOAL_P95_MS = 50
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "10000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
LINES = int(os.environ.get("BENCH_LINES", "50"))
# Worker processes: sends mostly wait on the relay and on commits, so production
# runs several per core (README: --concurrency 8).
WORKERS = int(os.environ.get("BENCH_WORKERS", "8"))
# gunicorn processes (8 threads each); production runs 4 (README).
WEB_WORKERS = int(os.environ.get("BENCH_WEB_WORKERS", "4"))
WEB_THREADS = int(os.environ.get("BENCH_WEB_THREADS", "8"))
PASSWORD = "bench-relay"
DEADLINE_SECONDS = int(os.environ.get("BENCH_DEADLINE", "900"))
# Rows written straight into the outbox (as campaigns do): the worker's side alone.
QUEUED = int(os.environ.get("BENCH_QUEUED", "2000"))


def _env(web_port: int) -> dict:
    env = dict(os.environ)
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/3")
    env.update(
        DJANGO_SETTINGS_MODULE="tuco.settings",
        CELERY_TASK_ALWAYS_EAGER="false",
        LOG_LEVEL="WARNING",
        SITE_URL=f"http://127.0.0.1:{web_port}",
        PYTHONUNBUFFERED="1",
    )
    if MODE == "closed":
        env.update(RATE_LIMIT_SEND="1000000", RATE_LIMIT_DEFAULT="1000000")
    return env


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


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


def _open_loop(
    base: str, keys: list[str], seconds: Fraction, batch: str, first: int = 0
) -> dict[str, list[tuple[float, str]]]:
    """Issue `POST /api/messages` (batch id `batch`, recipients numbered from `first`)
    and `GET /api/workspace` on a fixed schedule for `seconds`, each at RATE a second,
    interleaved, workspace after workspace. Returns, per request kind, (latency from
    the scheduled start in ms, outcome) of every request."""
    total = int(RATE * seconds)
    # POST i at i / RATE, GET i half a period later; both go to workspace i % W, so
    # each workspace gets one of each every W / RATE seconds.
    schedule = []
    for index in range(total):
        at = index / RATE
        schedule.append((float(at), "post", index))
        schedule.append((float(at + 1 / (2 * RATE)), "get", index))
    results: dict[str, list[tuple[float, str]]] = {"post": [], "get": []}
    errors_seen: dict[str, str] = {}
    lock = threading.Lock()

    def call(kind: str, index: int, due: float) -> None:
        # A connection of its own, like independent clients (and no reuse of a
        # kept-alive connection the server is closing meanwhile).
        headers = {"Authorization": f"Bearer {keys[index % len(keys)]}", "Connection": "close"}
        try:
            if kind == "post":
                body = {
                    "message": "Hi {firstName|there}, this is message " + str(index),
                    # Even last digit: on iMessage in the simulator's registry.
                    "recipientPhone": f"+1415{2000000 + (first + index) * 2:07d}",
                    "batchId": batch,
                }
                response = requests.post(
                    f"{base}/api/messages", json=body, headers=headers, timeout=60
                )
                outcome = "ok" if response.status_code == 201 else str(response.status_code)
            else:
                response = requests.get(f"{base}/api/workspace", headers=headers, timeout=60)
                outcome = "ok" if response.status_code == 200 else str(response.status_code)
        except requests.RequestException as exc:
            outcome = type(exc).__name__
            errors_seen.setdefault(outcome, str(exc)[:200])
        elapsed = (time.perf_counter() - due) * 1000
        with lock:
            results[kind].append((elapsed, outcome))

    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        origin = time.perf_counter() + 0.5
        for offset, kind, index in schedule:
            due = origin + offset
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            pool.submit(call, kind, index, due)
    for outcome, text in errors_seen.items():
        print(f"  {outcome}: {text}", file=sys.stderr)
    return results


def _log_end(access_log: str) -> int:
    with open(access_log) as log:
        return log.seek(0, os.SEEK_END)


def _server_times(access_log: str, start: int, end: int) -> dict[str, list[float]]:
    """Time spent inside gunicorn per request (ms), by kind, from the access log
    (`%(m)s %(U)s %(s)s %(D)s`) between two offsets: the server's share of the
    latencies."""
    times: dict[str, list[float]] = {"post": [], "get": []}
    with open(access_log) as log:
        log.seek(start)
        for line in log.read(end - start).splitlines():
            parts = line.split()
            if len(parts) != 4 or not parts[3].isdigit():
                continue
            method, path, status, micros = parts
            if not status.startswith("2"):
                continue
            if (method, path) == ("POST", "/api/messages"):
                times["post"].append(int(micros) / 1000)
            elif (method, path) == ("GET", "/api/workspace"):
                times["get"].append(int(micros) / 1000)
    return times


def _latency_row(case: str, samples: list[tuple[float, str]], **extra) -> dict:
    latencies = [ms for ms, _ in samples]
    errors = Counter(outcome for _, outcome in samples if outcome != "ok")
    return {
        "case": case,
        "count": len(samples),
        "seconds": float(SECONDS),
        "per_second": float(RATE),
        "p50_ms": _percentile(latencies, 0.50),
        "p95_ms": _percentile(latencies, 0.95),
        "p99_ms": _percentile(latencies, 0.99),
        "errors": sum(errors.values()),
        **extra,
        "note": (
            f"max {max(latencies):.0f} ms"
            + "".join(f", {n} x {outcome}" for outcome, n in sorted(errors.items()))
            + f"; load {_load()}"
        ),
    }


def _check_rate_limits() -> None:
    """The open loop sends each workspace RATE / WORKSPACES requests a second of each
    kind; that must stay within the send and the default limit (a minute's worth)."""
    from django.conf import settings

    from tuco.ratelimit import limit_for

    per_workspace = RATE / WORKSPACES
    for group in ("send", "default"):
        allowed = Fraction(limit_for(group), 60)
        if settings.RATE_LIMITS_ENABLED and per_workspace > allowed:
            raise SystemExit(
                f"BENCH_RATE {RATE} over {WORKSPACES} workspaces is {float(per_workspace):g}"
                f"/s per workspace, over the {group} limit of {float(allowed):g}/s"
            )


def _run_open(base: str, relay_url: str, workspaces: list, access_log: str) -> list[dict]:
    if PACING not in ("default", "off", "both"):
        raise SystemExit(f"BENCH_PACING must be default, off or both, not {PACING!r}")
    rows = []
    for pacing in ("default", "off") if PACING == "both" else (PACING,):
        rows += _run_open_once(base, relay_url, workspaces, access_log, pacing)
    return rows


def _run_open_once(
    base: str, relay_url: str, workspaces: list, access_log: str, pacing: str
) -> list[dict]:
    from messaging.models import Message
    from tuco.services import workspace_create

    stamp = time.time_ns()
    keys, mine = [], []
    make_lines = _seed.default_lines if pacing == "default" else _seed.unlimited_lines
    for index in range(WORKSPACES):
        workspace, key = workspace_create(
            name=f"Bench messaging {stamp} #{index}", owner_email=f"bench-{stamp}@bench.test"
        )
        workspaces.append(workspace)
        mine.append(workspace)
        keys.append(key)
        make_lines(workspace, [relay_url], PASSWORD)
    requests.post(f"{relay_url}/sim/reset", timeout=5)
    lines = "lines at default pacing" if pacing == "default" else "lines unpaced"

    if WARMUP:
        _open_loop(base, keys, WARMUP, "bench-warmup", first=500_000)
    start = _log_end(access_log)
    results = _open_loop(base, keys, SECONDS, "bench")
    server_times = _server_times(access_log, start, _log_end(access_log))
    rows = [
        _latency_row(
            f"POST /api/messages, open loop, {WORKSPACES} workspaces, {lines}",
            results["post"],
            goal_p95_ms=GOAL_P95_MS,
        ),
        _latency_row("GET /api/workspace (no-op), same run", results["get"]),
    ]
    for kind, times in server_times.items():
        if times:
            rows.append(
                {
                    "case": f"  of which in gunicorn, {kind.upper()}",
                    "count": len(times),
                    "p50_ms": _percentile(times, 0.50),
                    "p95_ms": _percentile(times, 0.95),
                    "p99_ms": _percentile(times, 0.99),
                    "note": "from the worker thread taking the request to its answer",
                }
            )

    # The worker's side: from each accepted POST to its `sent`. Paced lines send a
    # few of them during the run and schedule the rest for later.
    rows_of = Message.objects.filter(workspace__in=mine, batch_id="bench")
    if pacing == "default":
        time.sleep(5)  # the sends under way
    else:
        _wait_finished(rows_of, sum(1 for _, outcome in results["post"] if outcome == "ok"))
    lags = [
        (sent_at - created_at).total_seconds() * 1000
        for created_at, sent_at in rows_of.filter(sent_at__isnull=False).values_list(
            "created_at", "sent_at"
        )
    ]
    by_status = Counter(rows_of.values_list("status", flat=True))
    rows.append(
        {
            "case": f"POST to sent, {WORKSPACES} {lines}, celery -c {WORKERS}",
            "count": len(lags),
            "p50_ms": _percentile(lags, 0.50) if lags else None,
            "p95_ms": _percentile(lags, 0.95) if lags else None,
            "p99_ms": _percentile(lags, 0.99) if lags else None,
            "note": ", ".join(f"{k} {v}" for k, v in sorted(by_status.items()))
            + f"; load {_load()}",
        }
    )
    # What is still scheduled would keep the worker busy during the next run.
    Message.objects.filter(workspace__in=mine).delete()
    return rows


def _run_closed(base: str, relay_url: str, workspaces: list) -> list[dict]:
    from django.db.models import Max, Min

    from lines.simulator import measure_raw_rate
    from messaging.models import Message
    from tuco.services import workspace_create

    rows = []
    workspace, key = workspace_create(
        name=f"Bench messaging {int(time.time())}",
        owner_email=f"bench-{int(time.time() * 1000)}@bench.test",
        password="bench-password",
    )
    workspaces.append(workspace)
    _seed.unlimited_lines(workspace, [relay_url] * LINES, PASSWORD)
    requests.post(f"{relay_url}/sim/reset", timeout=5)

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
    span = rows_of.aggregate(first=Min("created_at"), last=Max("sent_at"))
    sent = rows_of.filter(status__in=done_statuses).count()
    by_status = Counter(rows_of.values_list("status", flat=True))
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
    return rows


def run() -> list[dict]:
    from messaging.models import Message
    from tuco.models import Workspace

    if MODE not in ("open", "closed"):
        raise SystemExit(f"BENCH_MODE must be open or closed, not {MODE!r}")
    if MODE == "open":
        _check_rate_limits()
    web_port, relay_port = children.free_port(), children.free_port()
    env = _env(web_port)
    python = sys.executable
    relay_cmd = [python, "manage.py", "relay_simulator", "--port", str(relay_port),
                 "--password", PASSWORD, "--delivery-delay", "0.5"]  # fmt: skip
    if os.environ.get("BENCH_WEBHOOKS") != "1":
        relay_cmd.append("--drop-webhooks")
    bin_dir = Path(python).parent
    access_log = f"/tmp/bench-messaging-access-{web_port}.log"
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
                str(WEB_THREADS),
                "-b",
                f"127.0.0.1:{web_port}",
                "--log-level",
                "warning",
                "--access-logfile",
                access_log,
                "--access-logformat",
                "%(m)s %(U)s %(s)s %(D)s",
            ],
            env,
            "web",
        ),  # fmt: skip
        "worker": _start(children.celery_worker_command(WORKERS), env, "worker"),
    }
    relay_url = f"http://127.0.0.1:{relay_port}"
    base = f"http://127.0.0.1:{web_port}"
    workspaces: list = []
    stop_beat = threading.Event()
    try:
        children.wait_http(f"{relay_url}/api/v1/ping")
        children.wait_http(f"{base}/api/workspace")

        # Beat's job: a periodic sweep catches anything that had to wait.
        def beat():
            from messaging.tasks import dispatch_due_messages

            while not stop_beat.wait(3):
                dispatch_due_messages.delay()

        threading.Thread(target=beat, daemon=True).start()
        if MODE == "open":
            return _run_open(base, relay_url, workspaces, access_log)
        return _run_closed(base, relay_url, workspaces)
    finally:
        stop_beat.set()
        for process in processes.values():
            children.stop(process)
        if workspaces:
            Message.objects.filter(workspace__in=workspaces).delete()
            Workspace.objects.filter(pk__in=[w.pk for w in workspaces]).delete()
