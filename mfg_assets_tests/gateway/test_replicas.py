"""Gateway replicas on a shared subscription, when one of them dies (issue 13, items 3 and 10).

Against a real mosquitto with persistence (the stack's settings: max_inflight 0, a large
queue). What these tests verify about mosquitto itself: a replica whose persistent session
is offline stays a member of the shared subscription, and the broker keeps dealing it its
share, queued in that session; only a reconnect under the SAME client id gets it out.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from mfg_assets.lake.registry import table
from mfg_assets.monitoring.alerts import WEBHOOK_ENV
from mfg_assets.stack.processes import Service
from mfg_assets.stack.supervise import RestartPolicy, Supervisor
from mfg_assets_tests.gateway.harness import (
    bronze_rows,
    connect_client,
    publish_all,
    sensor_messages,
    silver_sensor_rows,
    start_gateway,
    stop,
    wait_for,
    wait_online,
)

pytestmark = pytest.mark.integration


def _settled_rows(lake, quiet_s: float = 3.0, timeout: float = 30.0) -> int:
    """Bronze rows once the count stopped moving for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        rows = bronze_rows(lake)
        if rows != last:
            last, since = rows, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return rows
        time.sleep(0.25)
    return last


def test_offline_replica_share_waits_in_its_session_until_it_returns_under_its_id(
    broker, lake, data_dir
):
    n = 2000
    replica_a = start_gateway(broker.url, data_dir, "gw-a")
    replica_b = start_gateway(broker.url, data_dir, "gw-b")
    wait_online(broker.url, "gw-a", "gw-b")
    assert stop(replica_b) == 0  # a clean stop; its persistent session stays on the broker
    publisher = connect_client(broker.url, "replicas-publisher")
    publish_all(publisher, sensor_messages(n))
    restarted = None
    try:
        # mosquitto keeps dealing the offline session its share: the live replica gets only
        # part of the traffic (this is the stranding the StatefulSet ids + supervision fix)
        landed_while_down = _settled_rows(lake)
        assert 0.25 * n < landed_while_down < 0.75 * n, landed_while_down
        restarted = start_gateway(broker.url, data_dir, "gw-b", log_name="gw-b-2")
        wait_for(lambda: bronze_rows(lake) >= n, 60, f"{n} bronze rows after gw-b returned")
        time.sleep(1.5)  # anything landing twice would show up now
    finally:
        assert stop(replica_a) == 0
        if restarted is not None:
            assert stop(restarted) == 0
    bronze = lake.read(table("bronze.sensor_readings"))
    assert bronze.height == n and bronze.get_column("message_id").n_unique() == n
    assert silver_sensor_rows(lake).height == n
    sources = dict(bronze.group_by("source").len().iter_rows())
    assert sources["gateway:gw-b"] == n - landed_while_down  # the queued share, from gw-b


def test_a_new_client_id_leaves_the_old_sessions_share_stranded(broker, lake, data_dir):
    """What the Deployment did (`--client-id $(POD_NAME)`, a new name per pod): the new
    replica does not get what was queued for the old session."""
    n = 1000
    replica_a = start_gateway(broker.url, data_dir, "gw-old-a")
    replica_b = start_gateway(broker.url, data_dir, "gw-old-b")
    wait_online(broker.url, "gw-old-a", "gw-old-b")
    assert stop(replica_b) == 0
    publisher = connect_client(broker.url, "stranded-publisher")
    publish_all(publisher, sensor_messages(n))
    renamed = start_gateway(broker.url, data_dir, "gw-old-b-renamed")
    try:
        wait_online(broker.url, "gw-old-b-renamed")
        stranded = n - _settled_rows(lake)
    finally:
        assert stop(replica_a) == 0 and stop(renamed) == 0
    assert stranded > 0.25 * n, stranded


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _gateway_service(broker_url: str, data_dir: Path, client_id: str) -> Service:
    """A gateway as `make stack` runs one: a Service (own process group) under a client id."""
    argv = [sys.executable, "-m", "mfg_assets.cli", "gateway", "--broker", broker_url,
            "--client-id", client_id, "--metrics-port", "0", "--batch-interval", "0.5"]
    env = dict(os.environ, MFG_DATA_DIR=str(data_dir))
    return Service(client_id, argv, env, data_dir / f"{client_id}.log")


def test_kill_minus_nine_under_load_supervisor_restarts_and_every_message_lands_once(
    broker, lake, data_dir, monkeypatch
):
    webhook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{webhook.server_port}/alert")
    _Webhook.received = []
    services = [_gateway_service(broker.url, data_dir, f"gw-sup-{k}").start() for k in (1, 2)]
    supervisor = Supervisor(services, RestartPolicy()).start()  # the stack's defaults
    n, rate = 4000, 500.0  # 8 s of traffic
    messages = sensor_messages(n)
    publisher = connect_client(broker.url, "load-publisher")
    published_at: list[float] = []

    def publish() -> None:
        t0, infos = time.monotonic(), []
        for k, message in enumerate(messages):
            infos.append(publisher.publish(*message, qos=1))
            if k % 50 == 49:
                time.sleep(max(0.0, t0 + (k + 1) / rate - time.monotonic()))
        for info in infos:
            info.wait_for_publish(timeout=60)
        published_at.append(time.monotonic())

    try:
        wait_online(broker.url, "gw-sup-1", "gw-sup-2")
        thread = threading.Thread(target=publish)
        thread.start()
        wait_for(lambda: bronze_rows(lake) > 500, 30, "the first batches under load")
        victim = services[1]
        old_pid = victim.pid
        assert old_pid is not None
        psutil.Process(old_pid).kill()  # kill -9: no flush, no acks, no goodbye
        killed_at = time.monotonic()
        thread.join(60)
        assert published_at, "publisher did not finish"
        wait_for(lambda: silver_sensor_rows(lake).height >= n, 45, f"all {n} in silver")
        landed_at = time.monotonic()
        time.sleep(1.5)  # anything landing twice would show up now
        silver_rows = silver_sensor_rows(lake).height
        restarted = [t for t, name, what in supervisor.events
                     if name == "gw-sup-2" and what.startswith("restarted")]
    finally:
        supervisor.stop()
        for service in services:
            service.stop()
        webhook.shutdown()
    # reaped: the killed pid is gone, not a <defunct> zombie of this process
    assert not psutil.pid_exists(old_pid) or (
        psutil.Process(old_pid).status() != psutil.STATUS_ZOMBIE)
    assert restarted and victim.pid != old_pid
    assert silver_rows == n  # every message exactly once
    assert bronze_rows(lake) >= n
    assert any("gw-sup-2" in a["message"] and "exited with -9" in a["message"]
               for a in _Webhook.received), _Webhook.received
    restart_s = restarted[0] - killed_at
    delay_s = landed_at - killed_at
    after_publish_s = landed_at - published_at[0]
    print(f"\nkill -9 -> restarted {restart_s:.1f}s; kill -9 -> all {n} in silver "
          f"{delay_s:.1f}s; last publish -> all landed {after_publish_s:.1f}s")
    assert restart_s < 3.0  # first backoff is 1 s, plus one poll
    assert after_publish_s < 30.0  # the stated bound: the dead replica's share is not held


def test_drain_lands_a_removed_replicas_share_and_it_holds_back_nothing_after(
    broker, lake, data_dir
):
    """Scale-down: `mfg gateway --drain --client-id <removed>` lands what its session held;
    afterwards the broker deals the whole stream to the replica that is left."""
    n = 1000
    replica_a = start_gateway(broker.url, data_dir, "gw-keep")
    replica_b = start_gateway(broker.url, data_dir, "gw-gone")
    wait_online(broker.url, "gw-keep", "gw-gone")
    assert stop(replica_b) == 0  # removed for good
    publisher = connect_client(broker.url, "drain-publisher")
    publish_all(publisher, sensor_messages(n))
    try:
        wait_for(lambda: bronze_rows(lake) > 0.25 * n, 30, "the live replica's share")
        env = dict(os.environ, MFG_DATA_DIR=str(data_dir))
        out = subprocess.run(
            [sys.executable, "-m", "mfg_assets.cli", "gateway", "--broker", broker.url,
             "--client-id", "gw-gone", "--metrics-port", "0", "--drain"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert "drained gw-gone" in out.stdout
        wait_for(lambda: bronze_rows(lake) >= n, 30, f"all {n} after the drain")
        publish_all(publisher, sensor_messages(n, start=n))  # only gw-keep is left
        wait_for(lambda: bronze_rows(lake) >= 2 * n, 30, "the next stream, all via gw-keep")
        time.sleep(1.5)
    finally:
        assert stop(replica_a) == 0
    bronze = lake.read(table("bronze.sensor_readings"))
    assert bronze.height == 2 * n and silver_sensor_rows(lake).height == 2 * n
