"""`mfg gateway`: the long-running MQTT -> contract -> Delta service (no Dagster).

Delivery: QoS 1 subscriptions in a persistent MQTT v5 session with manual acknowledgement.
A message is acknowledged only after the Delta commit that holds it, so a crash at any
point loses nothing: the broker redelivers what was not acknowledged (at-least-once into
bronze) and silver's dedupe key makes it exactly-once downstream.

Threads: paho's network thread appends each message to an inbox (a deque: the cheapest
hand-over there is, as the network thread's time per message bounds the receive rate);
the broker's in-flight window (our Receive Maximum) bounds how many are unacknowledged,
and the network thread stops reading while received-but-uncommitted bytes exceed their
bound (backpressure: the broker holds the rest). One writer thread closes micro-batches,
routes, commits and acknowledges; with ``workers`` > 0 it hands the messages to worker
processes instead (see :mod:`mfg_assets.gateway.workers`), which commit and report back.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mfg_assets.gateway.commit import Committed, Item, commit_items
from mfg_assets.gateway.config import GatewayConfig
from mfg_assets.gateway.metrics import GatewayMetrics
from mfg_assets.gateway.routing import BlobStore, Router
from mfg_assets.gateway.workers import WorkerPool
from mfg_assets.lake.delta import Lake
from mfg_assets.uns import sparkplug
from mfg_assets.uns.broker import configure_client
from mfg_assets.uns.contract import Contract

log = logging.getLogger("mfg.gateway")


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        contract: Contract,
        lake: Lake,
        enterprise: str = "acme",
        contract_source: str | Path | None = None,
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
        self._pool: WorkerPool | None = None
        if config.workers:
            if contract_source is None:
                raise ValueError("workers need the contract's file (contract_source)")
            self._pool = WorkerPool(
                config.workers, config, contract_source, lake, enterprise, self._committed
            )
        self._inbox: deque[Item] = deque()
        self._arrived = threading.Event()  # set when the inbox stops being empty
        # Received and committed payload bytes, each written by one thread only (no lock
        # per message); their difference is the memory bound, whatever the message sizes.
        self._received_bytes = 0
        self._committed_bytes = 0
        self._commit_lock = threading.Lock()  # result threads of several workers
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
        topics = self.config.subscriptions(self.router.enterprise)
        client.subscribe([(topic, 1) for topic in topics])
        log.info("connected (session present: %s); subscribed to %s", flags.session_present, topics)

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
        topic, payload = message.topic, message.payload
        if topic == self.state_topic:
            self._own_state_messages += 1
        pending = self._received_bytes - self._committed_bytes
        if pending > 0 and pending + len(payload) > self.config.max_pending_bytes:
            self._wait_for_room(len(payload))
        self._received_bytes += len(payload)
        if not self._inbox:
            self._arrived.set()
        self._inbox.append((topic, payload, message.mid, message.qos, int(time.time() * 1000)))

    def _wait_for_room(self, size: int) -> None:
        # Blocks the network thread: the broker's window fills and it holds further messages.
        # Stopping meanwhile: the message is taken anyway, and flushed or redelivered.
        while not self._stop.is_set():
            pending = self._received_bytes - self._committed_bytes
            if pending <= 0 or pending + size <= self.config.max_pending_bytes:
                return
            time.sleep(0.05)

    # -- batching and commits --------------------------------------------------------------

    def _collect(self, interval: float, limit: int) -> list[Item]:
        """Messages of one micro-batch: from the first one, ``interval`` s or ``limit``."""
        inbox = self._inbox
        if not inbox:
            self._arrived.wait(0.2)
            self._arrived.clear()
            if not inbox:
                return []
        items: list[Item] = []
        deadline = time.monotonic() + interval
        while True:
            while inbox and len(items) < limit:
                items.append(inbox.popleft())
            remaining = deadline - time.monotonic()
            if len(items) >= limit or remaining <= 0:
                break
            time.sleep(min(remaining, 0.005))  # polling beats a wake-up per message
        self.metrics.received.inc(len(items))
        self.metrics.pending.set(len(inbox))
        return items

    def _write_loop(self) -> None:
        # Workers batch for themselves: hand messages over every few milliseconds.
        interval = 0.01 if self._pool else self.config.batch_interval_s
        limit = self.config.batch_max_messages
        while True:
            items = self._collect(interval, limit)
            if items:
                if self._pool is not None:
                    self._pool.dispatch(items)
                else:
                    self._committed(self._commit(items))
            elif self._stop.is_set():
                return

    def _commit(self, items: list[Item]) -> Committed:
        return commit_items(
            self.router,
            self.lake,
            items,
            retries=self.config.write_retries,
            stopping=self._stop.is_set,
            on_failure=self.metrics.write_failures.inc,
            backoff_s=self.config.write_backoff_s,
        )

    def _committed(self, done: Committed) -> None:
        """Acknowledge what a Delta commit holds (writer thread or a worker's result thread)."""
        ack = self.client.ack
        for mid, qos in done.acks:
            ack(mid, qos)
        observe = self.metrics.lag_seconds.observe
        for received_ms in done.received_ms:
            observe((done.committed_ms - received_ms) / 1000)
        with self._commit_lock:
            self._committed_bytes += done.payload_bytes
            self.committed_batches += 1
            self._send_rebirths(done.rebirths)
        if self._pool is not None:
            self.metrics.write_failures.inc(done.write_failures)
        self.metrics.write_failed.inc(done.write_failed)
        self.metrics.valid.inc(done.valid)
        self.metrics.invalid.inc(done.invalid)
        self.metrics.batches.inc()
        self.metrics.batch_seconds.observe(done.seconds)

    def _send_rebirths(self, requests: list[tuple[str, str, str]]) -> None:
        now = time.monotonic()
        for group, node, reason in requests:
            last = self._last_rebirth.get((group, node), -1e9)
            if now - last < self.config.rebirth_min_interval_s:
                continue
            self._last_rebirth[(group, node)] = now
            topic, payload = sparkplug.rebirth_command(group, node)
            self.client.publish(topic, payload, qos=0)
            log.info("requested rebirth of %s/%s: %s", group, node, reason)

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
        if self._pool is not None:
            self._pool.start()  # before our own threads start
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
        if self._pool is not None:
            self._pool.close(timeout)
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
            if self._pool is not None and not self._pool.alive():
                raise RuntimeError("a gateway worker process stopped unexpectedly")
        self.stop()
