"""Child processes of the benchmarks: a server or worker started in its own
session (so it can be stopped with everything it forked), logging to a file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def celery_worker_command(concurrency: int = 2) -> list[str]:
    """A Celery worker of this project, as production runs it, quiet."""
    celery = str(Path(sys.executable).parent / "celery")
    return [celery, "-A", "tuco", "worker", "-c", str(concurrency), "--loglevel", "WARNING",
            "--without-heartbeat", "--without-gossip", "--without-mingle"]  # fmt: skip


def start(cmd: list[str], env: dict, log_path: str) -> subprocess.Popen:
    log = open(log_path, "w")  # noqa: SIM115
    return subprocess.Popen(  # noqa: S603
        cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen) -> None:
    """Stop the process and its children: SIGTERM, then SIGKILL after 15 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Wait until `url` answers HTTP at all (any status)."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")
