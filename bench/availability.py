"""Availability checks end to end, the way production runs them: 10,000 leads in one
background job (`availability_job_create`, run by a real Celery worker over the Redis
broker) against 20 lines, each on its own relay simulator, gaps 0 and caps raised,
with Postgres underneath. Reported beside it: the simulators' raw request rate
measured in the same run, and the same leads answered again from the cache.

Processes: the 20 simulators run in one child process (the stand-in for the Macs),
the Celery worker in another (`-c 2`, as deployed; one job is worked on by one task
at a time, which sends each round of checks at once), and this process creates the
job, waits for it and measures the ceiling.

The ceiling: on a 2-core machine the relay process gets one core and its client the
other. The raw rate is bare availability GETs from one client process (this one, 32
threads with keep-alive sessions, no application work) against the relay process,
i.e. the most one client process can get out of it here. The job's worker has the
same budget (one process) and must also pay for Postgres, whose work shares the
same two cores. The goal is checks/s at least half the raw rate.

Environment: DATABASE_URL (Postgres), REDIS_URL (broker and cache), BENCH_LEADS
(10000), BENCH_LINES (20).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from bench import _processes as children

LEADS = int(os.environ.get("BENCH_LEADS", "10000"))
LINES = int(os.environ.get("BENCH_LINES", "20"))
RAW_THREADS = 32
RAW_REQUESTS = max(1000, LEADS // 2)
CACHE_CHUNK = 500
PASSWORD = "bench-secret"
DEADLINE_SECONDS = 600
WORKER_LOG = "/tmp/bench-availability-worker.log"


def _serve_relays(count: int, connection) -> None:
    """The relay process: `count` simulators until told to stop."""
    from lines.simulator import RelaySimulator

    simulators = [RelaySimulator(password=PASSWORD).start() for _ in range(count)]
    connection.send([simulator.url for simulator in simulators])
    connection.recv()
    for simulator in simulators:
        simulator.stop()


def _relay_stats(urls: list[str]) -> list[dict]:
    import requests

    return [requests.get(f"{url}/sim/stats", timeout=10).json()["data"] for url in urls]


def _availability_requests(stats: list[dict]) -> list[int]:
    return [s["by_endpoint"].get("availability", 0) for s in stats]


def _run_job(workspace, lead_ids: list[str], worker: subprocess.Popen) -> tuple[float, object]:
    """Queue one job for these leads and wait until the worker has finished it."""
    from leads.availability import availability_job_create
    from leads.models import AvailabilityJob

    started = time.perf_counter()
    job = availability_job_create(workspace=workspace, lead_ids=lead_ids)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        job.refresh_from_db()
        if job.status in AvailabilityJob.FINAL:
            return time.perf_counter() - started, job
        if worker.poll() is not None:
            raise RuntimeError(f"The Celery worker exited; see {WORKER_LOG}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Job {job.pk} not finished after {DEADLINE_SECONDS}s")
        time.sleep(0.02)


def _check_cached(workspace, leads, *, workers: int) -> tuple[float, int]:
    """The synchronous path over cached answers, in chunks, from a pool of threads."""
    from django.db import connection

    from leads.availability import availability_check_leads

    def work(chunk) -> int:
        try:
            batch = availability_check_leads(workspace=workspace, leads=chunk)
            if batch.stopped is not None:
                raise batch.stopped
            return len(batch.results)
        finally:
            connection.close()

    chunks = [leads[i : i + CACHE_CHUNK] for i in range(0, len(leads), CACHE_CHUNK)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        count = sum(pool.map(work, chunks))
    return time.perf_counter() - started, count


def run() -> list[dict]:
    from django.conf import settings
    from django.db.models import Count

    from leads.models import AvailabilityCacheEntry, AvailabilityJob, Lead
    from lines.models import Line
    from lines.services import line_create
    from lines.simulator import measure_raw_rate
    from tuco.models import Workspace
    from tuco.services import workspace_create

    if not settings.IS_POSTGRES or settings.CELERY_TASK_ALWAYS_EAGER:
        raise RuntimeError("Needs DATABASE_URL (Postgres), REDIS_URL, and tasks not eager")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tuco.settings", LOG_LEVEL="WARNING")
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    relays = context.Process(target=_serve_relays, args=(LINES, theirs), daemon=True)
    relays.start()
    worker = children.start(children.celery_worker_command(), env, WORKER_LOG)
    workspace = None
    rows = []
    try:
        urls = ours.recv()
        workspace, _ = workspace_create(
            name=f"Bench availability {int(time.time())}",
            owner_email=f"bench-{int(time.time() * 1000)}@tuco.test",
        )
        for url in urls:
            line_create(
                workspace=workspace,
                server_url=url,
                relay_password=PASSWORD,
                check_gap_seconds=0,
                daily_availability_checks_limit=10 * LEADS,
            )
        # The simulator says a number is on iMessage when its last digit is even: half.
        Lead.objects.bulk_create(
            [Lead(workspace=workspace, phone=f"+1415{2000000 + i:07d}") for i in range(LEADS + 50)],
            batch_size=2000,
        )
        lead_ids = list(
            Lead.objects.filter(workspace=workspace).order_by("pk").values_list("pk", flat=True)
        )
        warm, lead_ids = lead_ids[:50], lead_ids[50:]
        _run_job(workspace, warm, worker)  # the worker is up and its connections open

        before = _availability_requests(_relay_stats(urls))
        seconds, job = _run_job(workspace, lead_ids, worker)
        after = _availability_requests(_relay_stats(urls))
        per_line = sorted(b - a for a, b in zip(before, after, strict=True))
        statuses = dict(
            Lead.objects.filter(pk__in=lead_ids)
            .values_list("availability_status")
            .annotate(n=Count("pk"))
        )
        rows.append(
            {
                "case": f"job end to end, {LINES} lines, celery -c 2",
                "count": job.done,
                "seconds": seconds,
                "per_second": job.done / seconds,
                "note": (
                    f"{job.status}, {sum(per_line)} relay requests, per line "
                    f"{per_line[0]}-{per_line[-1]}, "
                    + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
                ),
            }
        )

        started = time.perf_counter()
        raw_rate = measure_raw_rate(urls[0], PASSWORD, RAW_REQUESTS, concurrency=RAW_THREADS)
        rows.append(
            {
                "case": f"simulator raw rate (ceiling), {RAW_THREADS} threads",
                "count": RAW_REQUESTS,
                "seconds": time.perf_counter() - started,
                "per_second": raw_rate,
                "note": f"job / ceiling = {job.done / seconds / raw_rate:.2f}",
            }
        )

        leads = list(Lead.objects.filter(pk__in=lead_ids).order_by("pk"))
        for workers in (1, 1, 4):
            before_total = sum(s["total"] for s in _relay_stats(urls))
            seconds, count = _check_cached(workspace, leads, workers=workers)
            after_total = sum(s["total"] for s in _relay_stats(urls))
            rows.append(
                {
                    "case": f"cache hits, {workers} thread{'s' if workers > 1 else ''}",
                    "count": count,
                    "seconds": seconds,
                    "per_second": count / seconds,
                    # The stats requests themselves count one per relay.
                    "note": f"{after_total - before_total - len(urls)} relay requests",
                }
            )
    finally:
        children.stop(worker)
        ours.send("stop")
        relays.join(timeout=30)
        if workspace is not None:
            AvailabilityJob.objects.filter(workspace=workspace).delete()
            AvailabilityCacheEntry.objects.filter(workspace=workspace).delete()
            Lead.objects.filter(workspace=workspace).delete()
            Line.objects.filter(workspace=workspace).delete()
            Workspace.objects.filter(pk=workspace.pk).delete()
    return rows
