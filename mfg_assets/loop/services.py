"""The loop's processes: a private broker, the gateway, edge runtimes and the Dagster
daemon, each a subprocess with its log under the loop's folder (no Dagster imports in the
stream plane: they are the same commands an operator runs)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from mfg_assets.uns.broker import configure_client, parse_broker_url

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    """A console script of this environment (mfg, dagster-daemon)."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found beside {sys.executable} nor on PATH")
    return found


class Service:
    """One subprocess in its own process group, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str]):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM to the whole group, then wait until every member is gone (SIGKILL after
        ``timeout_s``). The daemon's run workers live in its group and outlive it for a
        while, writing events into the instance: the next loop's fresh lakehouse could not
        be deleted under them, and they would take CPU from its timings."""
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if self._group_alive():
            self._signal(signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while self._group_alive() and time.monotonic() < deadline:
                time.sleep(0.1)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(self.proc.pid, sig)

    def _group_alive(self) -> bool:
        self.proc.poll()  # reap the leader: a zombie still counts as a group member
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True


def start_mosquitto(workdir: Path, stack: ExitStack) -> str:
    """A private broker on a free port (never the plant's shared one)."""
    binary = next((p for p in MOSQUITTO_PATHS if Path(p).exists()), shutil.which("mosquitto"))
    if binary is None:
        raise FileNotFoundError("mosquitto is not installed: install it or pass --broker")
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
             "max_inflight_messages 0", "max_queued_messages 1000000", "max_queued_bytes 0"]
    if os.geteuid() == 0:
        lines.append("user root")  # as root it would drop to 'mosquitto' and lose its files
    conf.write_text("\n".join(lines) + "\n")
    service = Service("mosquitto", [binary, "-c", str(conf)], workdir, dict(os.environ))
    stack.callback(service.stop)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        service.check()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return f"mqtt://127.0.0.1:{port}"
        time.sleep(0.1)
    raise TimeoutError(f"mosquitto did not listen on {port}")


class UnsWatcher:
    """Subscribes to the gateway's STATE and the edges' telemetry to know they are up."""

    def __init__(self, broker_url: str):
        broker = parse_broker_url(broker_url)
        self.seen: set[str] = set()
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"mfg-loop-watch-{os.getpid()}",
                                  protocol=mqtt.MQTTv5)
        configure_client(self.client, broker)
        self.client.on_connect = lambda c, *_: c.subscribe(
            [("spBv1.0/STATE/+", 1), ("+/+/+/+/+/+/telemetry", 0)])
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        if parts[:2] == ["spBv1.0", "STATE"]:
            try:
                online = bool(orjson.loads(message.payload).get("online"))
            except orjson.JSONDecodeError:
                online = False
            key = f"gateway:{parts[2]}"
        else:
            key, online = f"edge:{parts[-2]}", True
        with self._lock:
            (self.seen.add if online else self.seen.discard)(key)

    def wait_for(self, keys: list[str], services: list[Service], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for service in services:
                service.check()
            with self._lock:
                if set(keys) <= self.seen:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"not online after {timeout_s:.0f}s: {sorted(set(keys) - self.seen)}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_gateway(broker_url: str, log_dir: Path, env: dict[str, str], stack: ExitStack,
                  client_id: str = "mfg-loop-gateway") -> Service:
    service = Service("gateway", [_bin("mfg"), "gateway", "--broker", broker_url,
                                  "--client-id", client_id, "--metrics-port", "0"],
                      log_dir, env)
    stack.callback(service.stop)
    return service


def start_edge(edge_id: str, broker_url: str, log_dir: Path, env: dict[str, str],
               stack: ExitStack) -> Service:
    service = Service(edge_id, [_bin("mfg"), "edge", "run", "--edge-id", edge_id,
                                "--broker", broker_url, "--poll", "2", "--heartbeat", "60"],
                      log_dir, env)
    stack.callback(service.stop)
    return service


def start_daemon(log_dir: Path, env: dict[str, str], stack: ExitStack) -> Service:
    """`dagster-daemon run` on the project's code location: sensors, automation, run queue."""
    service = Service("dagster-daemon", [_bin("dagster-daemon"), "run", "-m",
                                         "mfg_assets.definitions"], log_dir, env)
    stack.callback(service.stop)
    return service
