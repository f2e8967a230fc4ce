"""Helpers for gateway integration tests: a gateway process, a publisher, lake probes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import polars as pl
from paho.mqtt.enums import CallbackAPIVersion

from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.lake.silver import refine, type_sensor_readings
from mfg_assets.uns.broker import parse_broker_url

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z


def start_gateway(
    broker_url: str, data_dir: Path, client_id: str, *extra: str, log_name: str | None = None
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MFG_DATA_DIR=str(data_dir))
    log = (data_dir / f"{log_name or client_id}.log").open("ab")
    command = [
        sys.executable,
        "-m",
        "mfg_assets.cli",
        "gateway",
        "--broker",
        broker_url,
        "--client-id",
        client_id,
        "--metrics-port",
        "0",
        *extra,
    ]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def wait_online(broker_url: str, *client_ids: str, timeout: float = 30.0) -> None:
    """Block until each gateway announced itself online (Sparkplug STATE, retained)."""
    online: set[str] = set()
    client = connect_client(broker_url)
    client.on_message = lambda c, u, m: (
        online.add(m.topic.rsplit("/", 1)[-1]) if orjson.loads(m.payload).get("online") else None
    )
    client.subscribe("spBv1.0/STATE/+", qos=1)
    try:
        wait_for(lambda: online >= set(client_ids), timeout, f"gateways {client_ids} online")
    finally:
        client.loop_stop()
        client.disconnect()


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    proc.terminate()
    return proc.wait(timeout=timeout)


def connect_client(broker_url: str, client_id: str = "") -> mqtt.Client:
    broker = parse_broker_url(broker_url)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def publish_all(client: mqtt.Client, messages: Iterable[tuple[str, bytes]], qos: int = 1) -> int:
    infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=60)
    return len(infos)


def sensor_messages(n: int, start: int = 0, machine: str = "weld-01") -> list[tuple[str, bytes]]:
    """n distinct welder sensor messages, one second apart (distinct silver keys)."""
    topic = f"acme/detroit/body/weld1/cell01/{machine}/sensors"
    return [
        (
            topic,
            orjson.dumps(
                {
                    "timestamp": T0 + (start + k) * 1000,
                    "machineType": "welder",
                    "seq": start + k,
                    "readings": [{"sensor": "current", "value": 100.0 + k % 7, "unit": "A"}],
                }
            ),
        )
        for k in range(n)
    ]


def bronze_rows(lake: Lake, name: str = "bronze.sensor_readings") -> int:
    spec = table(name)
    return lake.row_count(spec) if lake.exists(spec) else 0


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def silver_sensor_rows(lake: Lake) -> pl.DataFrame:
    """Bronze -> silver with the production functions: what silver would hold."""
    typed = type_sensor_readings(lake.read(table("bronze.sensor_readings")))
    return refine(table("silver.sensor_readings"), typed, run_id="test").valid


@contextmanager
def webhook_inbox() -> Iterator[tuple[str, list[dict]]]:
    """A local alert webhook (a real HTTP server): (URL, JSON messages received so far)."""
    received: list[dict] = []

    class Inbox(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Inbox)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def scrape(port: int) -> dict[str, float]:
    """A gateway's /metrics as {sample name: value} (samples without labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples
