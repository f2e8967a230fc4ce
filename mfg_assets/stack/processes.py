"""Child processes of the stack: start with a log file, wait until ready, stop the whole group.

Each service runs in its own session (process group): servers that fork workers (MLflow's
uvicorn, Dagster's code servers) are stopped with everything they started, and a Ctrl-C in
the terminal reaches only the launcher, which then stops the services in order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens there, else any free loopback port."""
    if preferred:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    """The URL answers at all (any HTTP status means the server is up)."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready: Callable[[], bool] | None = None  # None: alive is ready
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Service:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"{self.name} exited ({code}); log tail:\n{self.tail()}")
            if self.ready is None or self.ready():
                return
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not ready within {timeout_s:.0f}s; log tail:\n"
                           f"{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None:
            return
        stop_group(self.proc.pid, timeout_s)
        self.proc.wait()
        self.proc = None


def group_members(pgid: int) -> list[psutil.Process]:
    """Processes still in the process group ``pgid`` (a service and what it forked)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_group(pgid: int, timeout_s: float = 20.0) -> None:
    """SIGTERM the group (servers save state, edges say goodbye), SIGKILL what is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not [p for p in group_members(pgid) if _running(p)]:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
