"""Availability checks end to end: 10,000 leads against 20 simulated lines through the
engine (round robin, caps and gaps in Postgres, the real relay client over HTTP,
cache writes, lead writes), the simulator's raw request rate in the same process
as the ceiling, and the same leads again answered from the cache."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

LEADS = 10_000
LINES = 20
WORKERS = 32
CHUNK = 50
CACHE_CHUNK = 500
PASSWORD = "bench-secret"


def _chunks(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


def _check_all(
    workspace, leads, *, workers: int, force: bool, chunk: int = CHUNK
) -> tuple[float, list]:
    """Check leads the way the background job does (chunks, no sleeping), from a pool."""
    from django.db import connection

    from leads.availability import availability_check_leads

    results = []
    lock = threading.Lock()

    def work(chunk):
        try:
            batch = availability_check_leads(
                workspace=workspace, leads=chunk, force=force, wait=True
            )
            if batch.stopped is not None:
                raise batch.stopped
            with lock:
                results.extend(batch.results)
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, _chunks(leads, chunk)))
    return time.perf_counter() - started, results


def run() -> list[dict]:
    from leads.models import AvailabilityCacheEntry, Lead
    from lines.models import Line
    from lines.relay import clear_client_cache
    from lines.services import line_create
    from lines.simulator import RelaySimulator, measure_raw_rate
    from tuco.models import Workspace
    from tuco.services import workspace_create

    workspace, _ = workspace_create(name="Bench availability", owner_email="bench@tuco.test")
    simulators = [RelaySimulator(password=PASSWORD).start() for _ in range(LINES)]
    rows = []
    try:
        for simulator in simulators:
            line_create(
                workspace=workspace,
                server_url=simulator.url,
                relay_password=PASSWORD,
                check_gap_seconds=0,
                daily_availability_checks_limit=10 * LEADS,
            )
        Lead.objects.bulk_create(
            [Lead(workspace=workspace, phone=f"+1415{2000000 + i:07d}") for i in range(LEADS)],
            batch_size=2000,
        )
        leads = list(Lead.objects.filter(workspace=workspace).order_by("pk"))

        seconds, results = _check_all(workspace, leads, workers=WORKERS, force=False)
        requests = sum(s.stats["by_endpoint"].get("availability", 0) for s in simulators)
        statuses = {}
        for result in results:
            statuses[result.status] = statuses.get(result.status, 0) + 1
        per_line = sorted(s.stats["by_endpoint"].get("availability", 0) for s in simulators)
        rows.append(
            {
                "case": f"relay checks, {LINES} lines, {WORKERS} threads",
                "count": len(results),
                "seconds": seconds,
                "per_second": len(results) / seconds,
                "note": (
                    f"{requests} relay requests, per line {per_line[0]}-{per_line[-1]}, "
                    + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
                ),
            }
        )

        raw_n = 5000
        started = time.perf_counter()
        raw_rate = measure_raw_rate(simulators[0].url, PASSWORD, raw_n, concurrency=WORKERS)
        rows.append(
            {
                "case": f"simulator raw rate, 1 relay, {WORKERS} threads",
                "count": raw_n,
                "seconds": time.perf_counter() - started,
                "per_second": raw_rate,
                "note": "bare HTTP GETs, no application work",
            }
        )

        for workers in (1, 1, 4):
            before = sum(s.stats["total"] for s in simulators)
            seconds, results = _check_all(
                workspace, leads, workers=workers, force=False, chunk=CACHE_CHUNK
            )
            after = sum(s.stats["total"] for s in simulators)
            rows.append(
                {
                    "case": f"cache hits, {workers} thread{'s' if workers > 1 else ''}",
                    "count": len(results),
                    "seconds": seconds,
                    "per_second": len(results) / seconds,
                    "note": f"{after - before} relay requests",
                }
            )
    finally:
        for simulator in simulators:
            simulator.stop()
        clear_client_cache()
        AvailabilityCacheEntry.objects.filter(workspace=workspace).delete()
        Lead.objects.filter(workspace=workspace).delete()
        Line.objects.filter(workspace=workspace).delete()
        Workspace.objects.filter(pk=workspace.pk).delete()
    return rows
