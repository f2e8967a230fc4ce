"""Private mosquitto brokers for tests: free port, own config, stoppable and restartable.

Tests never stop or restart the machine's shared broker; they start one of these.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = "/usr/sbin/mosquitto"


def mosquitto_binary() -> str | None:
    return MOSQUITTO if Path(MOSQUITTO).exists() else shutil.which("mosquitto")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM (so a server can save its state), then SIGKILL if it does not exit in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Mosquitto:
    """One broker process. ``persistent=True`` keeps sessions across :meth:`restart`."""

    def __init__(self, workdir: Path, *, persistent: bool = False, extra_conf: str = "") -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise FileNotFoundError(f"mosquitto not installed ({MOSQUITTO} missing)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            # The gateway acks after its Delta commit: let its Receive Maximum set the window.
            "max_inflight_messages 0",
            "max_queued_messages 1000000",
            "max_queued_bytes 0",
        ]
        if os.geteuid() == 0:
            # started as root, mosquitto drops to the 'mosquitto' user, which cannot write
            # its persistence file into a pytest tmp_path (0700): stay who we are
            lines.append("user root")
        if persistent:
            lines += ["persistence true", f"persistence_location {workdir}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        self.conf.write_text("\n".join(lines) + "\n" + extra_conf)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self._wait_listening()
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)  # mosquitto saves its persistence file on SIGTERM
        self.proc = None

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def _wait_listening(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.proc.returncode}: "
                    f"{self.log_path.read_text()[-2000:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s}s")
