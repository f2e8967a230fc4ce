"""`mfg gateway`: the long-running MQTT -> contract -> Delta service (no Dagster).

Delivery: QoS 1 subscriptions in a persistent MQTT v5 session with manual acknowledgement.
A message is acknowledged only after the Delta commit that holds it, so a crash at any
point loses nothing: the broker redelivers what was not acknowledged (at-least-once into
bronze) and silver's dedupe key makes it exactly-once downstream.

Threads: paho's network thread puts messages on a bounded queue (when it is full the
network thread blocks, the broker's in-flight window fills, and the broker holds further
messages: backpressure); one writer thread closes micro-batches, routes, commits and acks.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import paho.mqtt.client as mqtt
import polars as pl
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mfg_assets.gateway.config import GatewayConfig
from mfg_assets.gateway.metrics import GatewayMetrics
from mfg_assets.gateway.replay import write_batch
from mfg_assets.gateway.routing import Batch, BlobStore, Router
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.uns import sparkplug
from mfg_assets.uns.broker import configure_client
from mfg_assets.uns.contract import Contract

log = logging.getLogger("mfg.gateway")


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ms: int


class Gateway:
    def __init__(
        self, config: GatewayConfig, contract: Contract, lake: Lake, enterprise: str = "acme"
    ) -> None:
        self.config = config
        self.lake = lake
        self.metrics = GatewayMetrics()
        self.router = Router(
            contract,
            source=f"gateway:{config.client_id}",
            enterprise=enterprise,
            blobs=BlobStore(lake.root),
        )
        self._queue: queue.Queue[Received] = queue.Queue(maxsize=config.receive_maximum)
        # Bytes received and not yet committed: the memory bound, whatever the message sizes.
        self._pending_bytes = 0
        self._room = threading.Condition()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="gateway-writer")
        self._last_rebirth: dict[tuple[str, str], float] = {}
        self.client = self._make_client()
        self.committed_batches = 0
        self._subscribed = threading.Event()
        self._own_state_messages = 0

    # -- MQTT ----------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        configure_client(client, self.config.broker, self.config.tls)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        # Sparkplug 3.0 host application state: edge nodes wait for it before publishing.
        client.will_set(self.state_topic, self._state_payload(False), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        return props

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self.metrics.connected.set(1)
        # Subscribing again is harmless when the session survived, and needed when not.
        client.subscribe([(topic, 1) for topic in self.config.subscriptions()])
        log.info(
            "connected (session present: %s); subscribed to %s",
            flags.session_present,
            self.config.subscriptions(),
        )

    @property
    def state_topic(self) -> str:
        return sparkplug.format_topic("STATE", host_id=self.config.client_id)

    def _state_payload(self, online: bool) -> bytes:
        return orjson.dumps({"online": online, "timestamp": int(time.time() * 1000)})

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [code for code in reason_codes if code.is_failure]
        if failed:
            log.error("subscription refused by the broker: %s", failed)
            return
        client.publish(self.state_topic, self._state_payload(True), qos=1, retain=True)
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.metrics.connected.set(0)
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); reconnecting with backoff", reason_code)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.state_topic:
            self._own_state_messages += 1
        item = Received(
            message.topic, message.payload, message.mid, message.qos, int(time.time() * 1000)
        )
        self.metrics.received.inc()
        with self._room:
            while (
                self._pending_bytes > 0
                and self._pending_bytes + len(item.payload) > self.config.max_pending_bytes
                and not self._stop.is_set()
            ):
                self._room.wait(0.5)
            self._pending_bytes += len(item.payload)
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)  # blocks the network thread: backpressure
                return
            except queue.Full:
                continue
        # Stopping with a full queue: the message stays unacknowledged and is redelivered.

    # -- batching and commits --------------------------------------------------------------

    def _collect(self) -> list[Received]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.monotonic() + self.config.batch_interval_s
        limit = self.config.batch_max_messages
        while len(items) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                items.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return items

    def _write_loop(self) -> None:
        while True:
            items = self._collect()
            if items:
                self._commit(items)
            elif self._stop.is_set():
                return

    def _commit(self, items: list[Received]) -> None:
        started = time.perf_counter()
        for item in items:
            self.router.route(item.topic, item.payload, item.received_ms)
        batch = self.router.take(f"gw-{uuid.uuid4().hex[:16]}")
        self._write_with_retries(batch)
        committed_ms = time.time() * 1000
        for item in items:
            if item.qos > 0:
                self.client.ack(item.mid, item.qos)
            self.metrics.lag_seconds.observe((committed_ms - item.received_ms) / 1000)
        self.metrics.valid.inc(batch.valid)
        self.metrics.invalid.inc(batch.invalid)
        self.metrics.batches.inc()
        with self._room:
            self._pending_bytes -= sum(len(item.payload) for item in items)
            self._room.notify_all()
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.pending.set(self._queue.qsize())
        self.committed_batches += 1
        self._send_rebirths()

    def _write_with_retries(self, batch: Batch) -> None:
        """Commit or keep trying: an unacknowledged batch must not be acknowledged later."""
        attempt = 0
        while True:
            try:
                write_batch(self.lake, batch)
                _record_batch(self.lake, batch)
                return
            except Exception:
                attempt += 1
                self.metrics.write_failures.inc()
                log.exception("Delta commit of %s failed (attempt %d)", batch.batch_id, attempt)
                if self._stop.is_set() and attempt >= self.config.write_retries:
                    # Exiting without acknowledging: the broker redelivers on restart.
                    raise
                time.sleep(min(30.0, 0.5 * 2 ** min(attempt, 6)))

    def _send_rebirths(self) -> None:
        now = time.monotonic()
        for group, node, reason in self.router.rebirth_requests:
            last = self._last_rebirth.get((group, node), -1e9)
            if now - last < self.config.rebirth_min_interval_s:
                continue
            self._last_rebirth[(group, node)] = now
            topic, payload = sparkplug.rebirth_command(group, node)
            self.client.publish(topic, payload, qos=0)
            log.info("requested rebirth of %s/%s: %s", group, node, reason)
        self.router.rebirth_requests.clear()

    # -- waiting (demo, tests) ------------------------------------------------------------

    def handled(self) -> int:
        """Messages committed so far (landed or quarantined), not counting our own STATE."""
        value = self.metrics.registry.get_sample_value
        total = (value("mfg_gateway_messages_valid_total") or 0) + (
            value("mfg_gateway_messages_invalid_total") or 0
        )
        return int(total) - self._own_state_messages

    def wait_online(self, timeout: float) -> None:
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"gateway not subscribed within {timeout}s")

    def wait_for_handled(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.handled() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway handled {self.handled()} of {count} messages")
            time.sleep(0.2)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        broker = self.config.broker
        if self.config.metrics_port:
            self.metrics.serve(self.config.metrics_port, self.config.metrics_host)
        self._writer.start()
        self.client.connect_async(
            broker.host,
            broker.port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self.client.loop_start()

    def stop(self, timeout: float = 30.0) -> None:
        """Flush what was received, acknowledge it, disconnect."""
        self._stop.set()
        self._writer.join(timeout)
        self.client.publish(self.state_topic, self._state_payload(False), qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()

    def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT, then flush and exit cleanly."""
        done = threading.Event()

        def _terminate(signum, frame) -> None:
            log.info("signal %s: flushing and stopping", signum)
            done.set()

        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
        self.start()
        while not done.wait(1.0):
            if not self._writer.is_alive():
                raise RuntimeError("gateway writer stopped unexpectedly")
        self.stop()


def _record_batch(lake: Lake, batch: Batch) -> None:
    spec = table("bronze.ingest_batches")
    row = {
        "ingest_batch_id": batch.batch_id,
        "source": "gateway",
        "file": None,
        "file_sha256": None,
        "committed_at": datetime.now(UTC),
        "messages": batch.received,
        "valid": batch.valid,
        "invalid": batch.invalid,
    }
    lake.append(spec, pl.DataFrame([row], schema=spec.polars_schema), batch=batch.batch_id)
