"""Sending through faults: real gunicorn, one Celery worker, Celery beat (the database
scheduler, as in production) and one relay simulator process per line, on Postgres,
with Redis reached through a TCP proxy run here so that it can be cut.

BENCH_FAULTS_MESSAGES (2000) `POST /api/messages`, each with an Idempotency-Key, paced
over the fault schedule; a request that fails or answers >= 500 (or 409: the same key
still being processed) is sent again with the same key, and every 10th message is
posted a second time on purpose: each answer must carry the first answer's `_id`.
Meanwhile, one after the other:
- the worker is killed with SIGKILL (its whole process group, as a machine dying) and
  started again BENCH_FAULTS_RESTART (3) seconds later, BENCH_FAULTS_KILLS (3) times;
- every relay fails its sends for BENCH_FAULTS_OUTAGE (20) seconds: with
  BENCH_FAULTS_RELAY_FAULT=timeout (the default) as the simulator's `send_timeout` (a
  504 after a second, nothing sent, so the outcome is unknown and each such row waits
  messaging.sending.SEND_SETTLE, 150 s, before the relay's history clears it for a
  retry); with `helper`, its Private API helper is disconnected (sends and checks
  refused outright, retried after the first backoff, 30 s);
- Redis is cut for BENCH_FAULTS_OUTAGE seconds (every connection closed, new ones
  refused), then restored.
Then it waits (BENCH_FAULTS_DRAIN, 600 s at most) for every message to be final.

Reported, from the relays' own record of what they received (each message's text is
unique) against the outbox: sent exactly once, duplicated (received more than once),
lost (no row, or a row that says sent that no relay received), stuck (not final at the
end), failed, responses >= 500, same-key answers with another `_id`, time to drain,
per fault the time from its end until the relays received a send again (goal <= 60 s;
only counted when messages were waiting at that moment), the longest the relays
went without any send from the first fault on while messages were waiting, and whether
the worker process running when Redis was cut was still the same, alive process once
Redis was back (`worker_kept`: it reconnects on its own instead of exiting).

BENCH_FAULTS_JSON=path also writes the row there (the CI test reads it).
Other knobs: BENCH_FAULTS_LINES (4), BENCH_FAULTS_CLIENTS (8), BENCH_FAULTS_GAP (5 s
between faults), BENCH_FAULTS_WORKERS (worker concurrency, 4).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import requests

from bench import _processes as children
from bench import _seed

MESSAGES = int(os.environ.get("BENCH_FAULTS_MESSAGES", "2000"))
KILLS = int(os.environ.get("BENCH_FAULTS_KILLS", "3"))
OUTAGE = float(os.environ.get("BENCH_FAULTS_OUTAGE", "20"))
RESTART = float(os.environ.get("BENCH_FAULTS_RESTART", "3"))
GAP = float(os.environ.get("BENCH_FAULTS_GAP", "5"))
LINES = int(os.environ.get("BENCH_FAULTS_LINES", "4"))
CLIENTS = int(os.environ.get("BENCH_FAULTS_CLIENTS", "8"))
WORKERS = int(os.environ.get("BENCH_FAULTS_WORKERS", "4"))
RELAY_FAULT = os.environ.get("BENCH_FAULTS_RELAY_FAULT", "timeout")
RELAY_FAULTS = {
    "timeout": ({"send_timeout": True, "timeout_delay": 1}, {"send_timeout": False}),
    "helper": ({"helper_connected": False}, {"helper_connected": True}),
}
SUPERVISOR_DELAY = 2.0
DRAIN = float(os.environ.get("BENCH_FAULTS_DRAIN", "600"))
GOAL_RESUME_SECONDS = 60
PASSWORD = "bench-relay"
WAITING = ("pending", "scheduled", "sending")
LOG = "/tmp/bench-faults-{}.log"


class TcpProxy:
    """A threaded TCP forwarder on a free local port. `cut()` closes every
    connection and refuses new ones until `restore()`."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = children.free_port()
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
        with self._lock:
            self._sockets.discard(sock)

    def cut(self) -> None:
        """Close every connection and refuse new ones (the port stops listening)."""
        self._up.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            self._close(sock)

    def restore(self) -> None:
        if not self._up.is_set():
            self._up.set()
            self._listen()

    def stop(self) -> None:
        self.cut()


def _env(web_port: int, redis_url: str) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tuco.settings",
        REDIS_URL=redis_url,
        CELERY_TASK_ALWAYS_EAGER="false",
        LOG_LEVEL="WARNING",
        SITE_URL=f"http://127.0.0.1:{web_port}",
        PYTHONUNBUFFERED="1",
        RATE_LIMIT_SEND="1000000",
        RATE_LIMIT_DEFAULT="1000000",
    )
    env.pop("CELERY_BROKER_URL", None)
    return env


def _proxied_redis_url(redis_url: str, port: int) -> str:
    parts = urlsplit(redis_url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}"
    return parts._replace(netloc=netloc).geturl()


def _relay_sends(relay_url: str) -> list[dict]:
    """Every message the relay accepted (its own record), oldest first."""
    found: list[dict] = []
    offset = 0
    while True:
        response = requests.post(
            f"{relay_url}/api/v1/message/query",
            params={"password": PASSWORD},
            json={"limit": 1000, "offset": offset, "sort": "ASC"},
            timeout=30,
        )
        page = response.json()["data"]
        found.extend(m for m in page if m.get("isFromMe"))
        if len(page) < 1000:
            return found
        offset += 1000


def _answer_id(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    message = body.get("message") if isinstance(body, dict) else None
    return message.get("_id") if isinstance(message, dict) else None


class Poster:
    """POSTs the messages with their keys, retrying with the same key."""

    def __init__(self, base: str, api_key: str, stamp: str, rate: float):
        self.base, self.api_key, self.stamp, self.rate = base, api_key, stamp, rate
        self.lock = threading.Lock()
        self.ids: dict[int, str] = {}
        self.errors_5xx = Counter()
        self.transport_errors = Counter()
        self.retries = 0
        self.replays = 0
        self.different_answers = 0
        self.gave_up = 0
        self.client_errors = Counter()

    def text(self, index: int) -> str:
        return f"Faults {self.stamp} #{index}"

    def _post_once(self, session, index: int, key: str) -> str | None:
        """Posts until an answer < 500 that is not 409; returns its `_id`."""
        body = {
            "message": self.text(index),
            # Even last digit: on iMessage in the simulator's registry.
            "recipientPhone": f"+1415{2000000 + index * 2:07d}",
            "batchId": "faults",
        }
        deadline = time.monotonic() + 300
        attempt = 0
        while time.monotonic() < deadline:
            if attempt:
                with self.lock:
                    self.retries += 1
                time.sleep(min(2.0, 0.25 * attempt))
            attempt += 1
            try:
                response = session.post(
                    f"{self.base}/api/messages",
                    json=body,
                    headers={"Idempotency-Key": key},
                    timeout=30,
                )
            except requests.RequestException as exc:
                with self.lock:
                    self.transport_errors[type(exc).__name__] += 1
                continue
            if response.status_code >= 500:
                with self.lock:
                    self.errors_5xx[response.status_code] += 1
                continue
            if response.status_code == 409:
                continue
            if response.status_code not in (200, 201):
                raise RuntimeError(f"POST answered {response.status_code}: {response.text[:300]}")
            return _answer_id(response)
        with self.lock:
            self.gave_up += 1
        return None

    def post(self, index: int) -> None:
        try:
            self._post(index)
        except Exception as exc:  # noqa: BLE001 - counted and shown in the row
            with self.lock:
                self.client_errors[str(exc)[:120]] += 1

    def _post(self, index: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.api_key}"
        key = f"faults-{self.stamp}-{index}"
        first = self._post_once(session, index, key)
        if first is None:
            return
        seen = [first]
        if index % 10 == 0:
            seen.append(self._post_once(session, index, key))
            with self.lock:
                self.replays += 1
        with self.lock:
            self.ids[index] = first
            self.different_answers += sum(1 for answer in seen[1:] if answer != first)

    def run(self, total: int) -> None:
        origin = time.monotonic()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            for index in range(total):
                due = origin + index / self.rate
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                pool.submit(self.post, index)


class Faults:
    """The fault schedule, run in a thread: (kind, start, end) of each fault."""

    def __init__(
        self, restart_worker, kill_worker, current_worker, relay_urls: list[str], proxy: TcpProxy
    ):
        self.restart_worker, self.kill_worker = restart_worker, kill_worker
        self.current_worker = current_worker
        self.relay_urls, self.proxy = relay_urls, proxy
        self.done: list[tuple[str, float, float]] = []
        self.errors: list[str] = []
        # The worker process cut off from Redis, and whether it was still the running
        # worker, alive, GAP seconds after Redis came back.
        self.worker_kept: bool | None = None

    @staticmethod
    def planned_seconds() -> float:
        return GAP + KILLS * (RESTART + GAP) + 2 * (OUTAGE + GAP)

    def _relays(self, **switches) -> None:
        for url in self.relay_urls:
            requests.post(f"{url}/sim/config", json=switches, timeout=10).raise_for_status()

    def _kill(self) -> None:
        start = time.time()
        self.kill_worker()
        time.sleep(RESTART)
        self.restart_worker()
        self.done.append(("worker SIGKILL", start, time.time()))
        time.sleep(GAP)

    def run(self) -> None:
        try:
            time.sleep(GAP)
            kills = KILLS
            if kills:
                self._kill()
                kills -= 1
            start = time.time()
            failing, working = RELAY_FAULTS[RELAY_FAULT]
            self._relays(**failing)
            time.sleep(OUTAGE)
            self._relays(**working)
            self.done.append(("relays fail sends", start, time.time()))
            time.sleep(GAP)
            start = time.time()
            cut_off = self.current_worker()
            self.proxy.cut()
            time.sleep(OUTAGE)
            self.proxy.restore()
            self.done.append(("redis cut", start, time.time()))
            time.sleep(GAP)
            self.worker_kept = self.current_worker() is cut_off and cut_off.poll() is None
            for _ in range(kills):
                self._kill()
        except Exception as exc:  # noqa: BLE001 - reported in the row
            self.errors.append(repr(exc))


def run() -> list[dict]:
    from django.conf import settings
    from django.core.management import call_command

    from messaging.models import Message
    from tuco.models import Workspace
    from tuco.services import workspace_create

    if not settings.IS_POSTGRES:
        raise SystemExit("bench.faults needs Postgres (DATABASE_URL)")
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        raise SystemExit("bench.faults needs Redis (REDIS_URL)")
    target = urlsplit(redis_url)
    proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 6379)).start()
    web_port = children.free_port()
    env = _env(web_port, _proxied_redis_url(redis_url, proxy.port))
    call_command("setup_periodic_tasks", verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
    python = sys.executable
    bin_dir = Path(python).parent
    relay_ports = [children.free_port() for _ in range(LINES)]
    relay_urls = [f"http://127.0.0.1:{port}" for port in relay_ports]
    processes: dict = {}
    for index, port in enumerate(relay_ports):
        processes[f"relay{index}"] = children.start(
            [python, "manage.py", "relay_simulator", "--port", str(port),
             "--password", PASSWORD, "--delivery-delay", "0.5", "--drop-webhooks"],
            env, LOG.format(f"relay{index}"),
        )  # fmt: skip
    processes["web"] = children.start(
        [str(bin_dir / "gunicorn"), "tuco.wsgi", "-w", "2", "-k", "gthread", "--threads", "8",
         "-b", f"127.0.0.1:{web_port}", "--log-level", "warning"],
        env, LOG.format("web"),
    )  # fmt: skip
    worker_cmd = children.celery_worker_command(WORKERS)
    processes["worker"] = children.start(worker_cmd, env, LOG.format("worker"))
    schedule_file = f"/tmp/bench-faults-beat-{web_port}"
    processes["beat"] = children.start(
        [str(bin_dir / "celery"), "-A", "tuco", "beat", "--loglevel", "WARNING",
         "-s", schedule_file],
        env, LOG.format("beat"),
    )  # fmt: skip
    beat_cmd = processes["beat"].args
    # The bench stands in for the supervisor production runs these under (systemd,
    # Restart=always): a worker or beat that exits on its own is started again after
    # SUPERVISOR_DELAY, and each such exit is reported.
    supervised = {"worker": worker_cmd, "beat": beat_cmd}
    exits: list[tuple[str, float, int]] = []
    killing = threading.Lock()
    stop_supervisor = threading.Event()
    starts = Counter()

    def start_again(name: str) -> None:
        starts[name] += 1
        processes[name] = children.start(
            supervised[name], env, LOG.format(f"{name}-{starts[name]}")
        )

    def supervise() -> None:
        while not stop_supervisor.wait(1):
            for name in supervised:
                with killing:
                    code = processes[name].poll()
                    if code is None:
                        continue
                    exits.append((name, time.time(), code))
                    time.sleep(SUPERVISOR_DELAY)
                    start_again(name)

    def kill_worker() -> None:
        killing.acquire()
        worker = processes["worker"]
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    def restart_worker() -> None:
        start_again("worker")
        killing.release()

    threading.Thread(target=supervise, daemon=True).start()

    base = f"http://127.0.0.1:{web_port}"
    workspace = None
    try:
        for url in relay_urls:
            children.wait_http(f"{url}/api/v1/ping", timeout=60.0)
        children.wait_http(f"{base}/api/workspace", timeout=60.0)
        stamp = uuid.uuid4().hex[:10]
        workspace, api_key = workspace_create(
            name=f"Bench faults {stamp}", owner_email=f"faults-{stamp}@bench.test"
        )
        _seed.unlimited_lines(workspace, relay_urls, PASSWORD)
        for url in relay_urls:
            requests.post(f"{url}/sim/reset", timeout=5)

        faults = Faults(restart_worker, kill_worker, lambda: processes["worker"], relay_urls, proxy)
        rate = MESSAGES / max(10.0, faults.planned_seconds())
        poster = Poster(base, api_key, stamp, rate)
        started = time.time()
        fault_thread = threading.Thread(target=faults.run, daemon=True)
        fault_thread.start()
        poster.run(MESSAGES)
        fault_thread.join()
        posted = time.time()
        rows_of = Message.objects.filter(workspace=workspace, batch_id="faults")
        deadline = time.monotonic() + DRAIN
        while time.monotonic() < deadline and rows_of.filter(status__in=WAITING).exists():
            time.sleep(1)
        drained = time.time()

        received: Counter = Counter()
        send_times: list[float] = []
        for url in relay_urls:
            for message in _relay_sends(url):
                received[message.get("text")] += 1
                send_times.append(message["dateCreated"] / 1000)
        send_times.sort()
        by_text = dict(rows_of.values_list("body", "status"))
        rows_per_text = Counter(rows_of.values_list("body", flat=True))
        statuses = Counter(by_text.values())
        once = duplicated = lost = stuck = failed = 0
        for index in range(MESSAGES):
            text = poster.text(index)
            status = by_text.get(text)
            count = received.get(text, 0)
            if count == 1:
                once += 1
            elif count > 1:
                duplicated += 1
            if status is None or (count == 0 and status in ("sent", "delivered", "read")):
                lost += 1
            elif status in WAITING:
                stuck += 1
            elif status == "failed":
                failed += 1
        # Why the rows still waiting wait (their last error, if any).
        waiting_why = Counter(
            (status, (error or "")[:80])
            for status, error in rows_of.filter(status__in=WAITING).values_list(
                "status", "error_message"
            )
        )
        extra_rows = sum(n - 1 for n in rows_per_text.values() if n > 1)

        # From each fault's end to the first send the relays received after it, when
        # messages were waiting then.
        resumes = []
        for kind, _start, end in faults.done:
            after = next((t for t in send_times if t >= end), None)
            waiting = Message.objects.filter(
                workspace=workspace, batch_id="faults", created_at__lt=_dt(end)
            ).count() > sum(1 for t in send_times if t < end)
            if waiting and after is not None:
                resumes.append((kind, after - end))
            elif waiting:
                resumes.append((kind, drained - end))
        # The longest the relays went without a send, from the first fault on, while
        # messages were still waiting (the tail counts when the run ended undrained).
        first_fault = min((start for _, start, _ in faults.done), default=started)
        marks = [t for t in send_times if t >= first_fault]
        last_needed = drained if stuck else (marks[-1] if marks else first_fault)
        points = [first_fault, *(t for t in marks if t <= last_needed), last_needed]
        stall = max((b - a for a, b in zip(points, points[1:], strict=False)), default=0.0)
        worst = max(resumes, key=lambda item: item[1]) if resumes else None
        row = {
            "case": f"{MESSAGES} messages, {LINES} lines, {KILLS} kills, outages {OUTAGE:g} s"
            f" (relays: {RELAY_FAULT})",
            "count": MESSAGES,
            "once": once,
            "duplicated": duplicated,
            "lost": lost,
            "stuck": stuck,
            "failed": failed,
            "http_5xx": sum(poster.errors_5xx.values()),
            "exits": len(exits),
            "worker_kept": {True: "yes", False: "no", None: ""}[faults.worker_kept],
            "different_answers": poster.different_answers + extra_rows,
            "retries": poster.retries,
            "replays": poster.replays,
            "drain_s": drained - posted,
            "total_s": drained - started,
            "resume_max_s": worst[1] if worst else 0.0,
            "longest_stall_s": stall,
            "goal_resume_s": GOAL_RESUME_SECONDS,
            "note": (
                ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
                + f"; replays {poster.replays}, gave up {poster.gave_up}"
                + "".join(f", {n} x {k}" for k, n in sorted(poster.transport_errors.items()))
                + "".join(f", {n} x HTTP {k}" for k, n in sorted(poster.errors_5xx.items()))
                + "; resume "
                + ", ".join(f"{kind} {seconds:.1f}s" for kind, seconds in resumes)
                + "".join(
                    f"; {name} exited by itself (code {code}) at +{at - started:.0f}s"
                    for name, at, code in exits
                )
                + "".join(f"; client error {n} x {k}" for k, n in poster.client_errors.items())
                + "".join(
                    f"; {n} {status} ({why or 'no error'})"
                    for (status, why), n in waiting_why.most_common(3)
                )
                + ("; fault errors " + "; ".join(faults.errors) if faults.errors else "")
            ),
        }
        out = os.environ.get("BENCH_FAULTS_JSON")
        if out:
            Path(out).write_text(json.dumps(row))
        return [row]
    finally:
        stop_supervisor.set()
        proxy.restore()
        # Together: each may take seconds to shut down (a worker finishing its tasks).
        with ThreadPoolExecutor(max_workers=len(processes) or 1) as pool:
            list(pool.map(children.stop, processes.values()))
        proxy.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(schedule_file)
        if workspace is not None:
            Message.objects.filter(workspace=workspace).delete()
            Workspace.objects.filter(pk=workspace.pk).delete()


def _dt(epoch: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC)
