"""`mfg edge run`: the edge service. UNS in, predictions and heartbeats out (no Dagster).

    runtime = EdgeRuntime(RuntimeConfig("edge-cam01", "mqtt://127.0.0.1:1883"))
    runtime.run_forever()

- **Bundles.** The edge reads its assignment from the bundle store (polled), fetches the
  bundle into a local cache, verifies signature and checksums, loads it and runs it once
  on a neutral input. Only then does it replace the running bundle. A bundle that fails
  any step is refused (logged, reported in telemetry, not retried) and the running one
  stays. The id of the last bundle that ran is kept on disk, so a restart with a bad
  assignment comes back on the last good bundle.
- **Forged assignments.** The assignment is unsigned: its bundle id must be a plain name
  (no path), the bundle's signed manifest must name that same id and this edge, and no file
  outside the edge's cache is ever read, written or deleted. A bad assignment is refused
  like a bad bundle (once, logged, reported in telemetry); polling and heartbeats go on.
- **Hot swap.** One worker thread scores messages in arrival order and picks up the active
  predictor once per message; the control thread swaps the reference between messages. A
  message is scored by the old or the new bundle, never by neither. If the new bundle
  raises while scoring, the worker goes back to the previous bundle and scores the same
  message with it.
- **Delivery.** QoS 1 subscriptions in a persistent MQTT v5 session with manual
  acknowledgement: an input is acknowledged after its prediction has been handed to the
  client, so a crash means redelivery, not loss.
- **Topics.** Camera edges subscribe to their cameras' ``.../inspection`` topics, line edges
  to their machines' ``.../sensors`` topics (rolling windows, scored when a window
  completes) or to their Sparkplug B edge node, ``spBv1.0/<group>/+/<node>/#``: the edge is
  then a Sparkplug host of its own (births, aliases, seq, bounded rebirth requests; see
  :mod:`mfg_assets.edge.sparkplug_input`) and builds the same windows from DDATA.
  Predictions go to ``{place}/{edgeId}/predictions``, heartbeats to
  ``{place}/{edgeId}/telemetry`` (EdgePrediction / EdgeTelemetry in the plant contract).
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psutil
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mfg_assets.edge import cache, signing
from mfg_assets.edge.bundle import BundleError, check_bundle_id, verify_bundle
from mfg_assets.edge.predictor import Prediction, Predictor, read_png
from mfg_assets.edge.sparkplug_input import Readings, SparkplugInput, is_sparkplug_topic
from mfg_assets.edge.store import BundleStore, Device
from mfg_assets.edge.windows import RollingWindows
from mfg_assets.settings import get_settings
from mfg_assets.uns.broker import configure_client, parse_broker_url
from mfg_assets.uns.sparkplug import SparkplugDecodeError

log = logging.getLogger("mfg.edge")

SCHEMA_VERSION = "1.0.0"  # info.version of the plant contract
STATE_FILE = "state.json"


@dataclass
class RuntimeConfig:
    edge_id: str
    broker_url: str
    store_uri: str | None = None
    cache_dir: Path | None = None  # default: <data dir>/edge/<edge_id>
    poll_s: float = 5.0  # assignment poll period
    heartbeat_s: float = 30.0
    client_id: str | None = None
    threads: int = 1  # onnxruntime intra-op threads
    queue_size: int = 10_000
    session_expiry_s: int = 3600
    rebirth_min_interval_s: float = 5.0  # at most one Sparkplug rebirth request per node

    def __post_init__(self) -> None:
        if self.cache_dir is None:
            self.cache_dir = get_settings().data_dir / "edge" / self.edge_id
        self.cache_dir = Path(self.cache_dir)


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass
class RuntimeStats:
    received: int = 0
    predictions: int = 0
    failed: int = 0  # inputs that no bundle could score (bad payload, no fallback)
    windows_skipped: int = 0  # completed windows with too few samples
    swaps: int = 0
    fallbacks: int = 0
    rebirths: int = 0  # Sparkplug rebirth commands sent
    refused: dict[str, str] = field(default_factory=dict)  # bundle id -> reason


class EdgeRuntime:
    def __init__(
        self,
        config: RuntimeConfig,
        device: Device | None = None,
        store: BundleStore | None = None,
        public_key: Ed25519PublicKey | None = None,
    ) -> None:
        self.config = config
        self.store = store or BundleStore(config.store_uri)
        found = device or self.store.device(config.edge_id)
        if found is None:
            raise ValueError(
                f"edge {config.edge_id} is not registered in {self.store.uri}; "
                "run `mfg edge register` first"
            )
        self.device = found
        self.public_key = public_key or signing.load_public_key()
        self.stats = RuntimeStats()
        self.active: Predictor | None = None
        self.previous: Predictor | None = None  # the bundle to fall back to
        self.windows: RollingWindows | None = None
        self._swap = threading.Lock()
        self._has_bundle = threading.Event()
        self._events: deque[dict[str, str]] = deque(maxlen=100)
        self._problem = False  # an ERROR since the last heartbeat: report "degraded"
        self._started = time.monotonic()
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize=config.queue_size)
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self.client: mqtt.Client | None = None
        self._publish: Callable[[str, bytes], None] = self._mqtt_publish
        # Sparkplug host state of the nodes among the sources (fed by the worker thread only)
        self.sparkplug = SparkplugInput(config.rebirth_min_interval_s)
        self._command: Callable[[str, bytes], None] = self._mqtt_command

    # -- events (logged, and reported in the next heartbeat) ----------------------------------

    def _event(self, level: int, message: str) -> None:
        log.log(level, "%s: %s", self.config.edge_id, message)
        self._events.append({"level": logging.getLevelName(level), "message": message[:2000]})
        if level >= logging.ERROR:
            self._problem = True

    # -- bundles ------------------------------------------------------------------------------

    def _state_path(self) -> Path:
        return self.config.cache_dir / STATE_FILE  # type: ignore[operator]

    def last_good_id(self) -> str | None:
        try:
            last = json.loads(self._state_path().read_text()).get("last_good")
        except (OSError, ValueError, AttributeError):
            return None
        return last if isinstance(last, str) else None

    def _remember(self, bundle_id: str) -> None:
        path = self._state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"last_good": bundle_id}))
        tmp.replace(path)

    def load(self, bundle_id: str) -> Predictor:
        """Fetch, verify, load and warm up a bundle; raise BundleError when it must not run."""
        bundle_id = check_bundle_id(bundle_id)  # a name, never a path: before any file op
        cache_dir = self.config.cache_dir / "bundles"  # type: ignore[operator]
        try:
            local = self.store.fetch(bundle_id, cache_dir)
        except FileNotFoundError as exc:
            raise BundleError(str(exc)) from None
        try:
            bundle = verify_bundle(local, self.public_key)
            # The signed manifest vouches for the unsigned assignment: same id, this edge.
            if bundle.bundle_id != bundle_id:
                raise BundleError(
                    f"the assignment names bundle {bundle_id}, but its signed manifest "
                    f"names bundle {bundle.bundle_id!r}"
                )
            if bundle.manifest.get("edge_id") != self.config.edge_id:
                raise BundleError(
                    f"bundle {bundle_id} was built for {bundle.manifest.get('edge_id')}, "
                    f"not {self.config.edge_id}"
                )
            predictor = Predictor(bundle, self.config.threads)
            predictor.warm_up()
        except BundleError:
            cache.remove(cache_dir, bundle_id)  # never keep a refused copy around
            raise
        except Exception as exc:
            cache.remove(cache_dir, bundle_id)
            raise BundleError(
                f"bundle {bundle_id} does not run: {type(exc).__name__}: {exc}"
            ) from exc
        return predictor

    def activate(self, predictor: Predictor) -> None:
        """Make ``predictor`` the one the worker uses from its next message on."""
        with self._swap:
            old = self.active
            if old is not None and old.bundle_id == predictor.bundle_id:
                return
            self.previous = old
            self.active = predictor
            if predictor.window is None:
                self.windows = None
            elif self.windows is None or self.windows.spec != predictor.window:
                self.windows = RollingWindows(predictor.window)  # else: keep open windows
            if old is not None:
                self.stats.swaps += 1
        self._remember(predictor.bundle_id)
        self._has_bundle.set()
        was = f" (was {old.bundle_id})" if old is not None else ""
        self._event(logging.INFO, f"bundle {predictor.bundle_id} active{was}")

    def refresh(self) -> bool:
        """Follow the store's assignment; True when a new bundle became active."""
        try:
            assignment = self.store.assignment(self.config.edge_id)
        except Exception as exc:  # store unreachable: keep running what we have
            self._event(logging.WARNING, f"bundle store unreachable: {exc}")
            return False
        wanted = assignment.bundle_id if assignment else None
        # refusals are remembered by a printable, hashable key (the id may be any JSON value)
        key = wanted if isinstance(wanted, str) and wanted.isprintable() else repr(wanted)[:200]
        if wanted is None or key in self.stats.refused:
            if self.active is None:
                return self._fall_back_to_last_good()
            return False
        if self.active is not None and self.active.bundle_id == wanted:
            return False
        try:
            predictor = self.load(wanted)
        except BundleError as exc:
            self.stats.refused[key] = str(exc)
            keeping = self.active.bundle_id if self.active else "none"
            self._event(logging.ERROR, f"refused bundle {key[:200]}: {exc}; keeping {keeping}")
            if self.active is None:
                self._fall_back_to_last_good()
            return False
        except OSError as exc:  # the store or the disk failed mid-fetch: try again next poll
            self._event(logging.WARNING, f"bundle {key[:200]} not fetched: {exc}")
            return False
        self.activate(predictor)
        return True

    def _fall_back_to_last_good(self) -> bool:
        last = self.last_good_id()
        if last is None or last in self.stats.refused or self.active is not None:
            return False
        try:
            self.activate(self.load(last))
        except BundleError as exc:
            self.stats.refused[last] = str(exc)
            self._event(logging.ERROR, f"last good bundle {last} does not load either: {exc}")
            return False
        self._event(logging.WARNING, f"running last good bundle {last}")
        return True

    # -- scoring ------------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Score one UNS message; return the (topic, payload) predictions to publish."""
        started = time.perf_counter()
        self.stats.received += 1
        readings: list[Readings] | None = None
        if is_sparkplug_topic(topic):
            # The session sees every message, bundle or not: births must never be missed.
            readings = self._sparkplug(topic, payload)
            if not readings:
                return []
        with self._swap:
            predictor, windows = self.active, self.windows
        if predictor is None:
            self.stats.failed += 1
            self._event(logging.ERROR, f"no bundle loaded; message on {topic} not scored")
            return []
        try:
            if readings is not None:
                inputs = self._reading_inputs(predictor, windows, readings)
            else:
                inputs = self._inputs(predictor, windows, topic, payload)
        except Exception as exc:  # the message's fault, not the bundle's: no fallback
            self.stats.failed += 1
            self._event(logging.WARNING, f"message on {topic} not scored: {exc!r}")
            return []
        out = []
        for source_id, data in inputs:
            try:
                prediction = self._infer(predictor, data)
            except Exception as exc:
                fallback = self._fall_back(predictor, exc)
                if fallback is None:
                    self.stats.failed += 1
                    continue
                predictor = fallback
                prediction = self._infer(predictor, data)
            latency_ms = (time.perf_counter() - started) * 1000.0
            out.append((self.device.topic("predictions"),
                        self.prediction_payload(predictor, source_id, prediction, latency_ms)))
        self.stats.predictions += len(out)
        return out

    def _inputs(
        self, predictor: Predictor, windows: RollingWindows | None, topic: str, payload: bytes
    ) -> list[tuple[str, np.ndarray]]:
        """Decode a message into model inputs: (source id, pixels or window vector)."""
        parts = topic.split("/")
        message_class, asset = parts[-1], parts[-2]
        doc = orjson.loads(payload)
        if message_class == "inspection" and predictor.kind == "image":
            return [(str(doc["imageId"]), read_png(base64.b64decode(doc["data"])))]
        if message_class == "sensors" and windows is not None:
            readings = {r["sensor"]: r["value"] for r in doc["readings"]}
            return self._reading_inputs(predictor, windows, [
                Readings(asset, doc["machineType"], int(doc["timestamp"]), readings)])
        raise ValueError(f"bundle {predictor.bundle_id} ({predictor.kind}) does not score "
                         f"{message_class} messages")

    def _reading_inputs(
        self, predictor: Predictor, windows: RollingWindows | None, readings: list[Readings]
    ) -> list[tuple[str, np.ndarray]]:
        """Feed sensor readings into the rolling windows; the windows they complete."""
        if windows is None:
            raise ValueError(f"bundle {predictor.bundle_id} ({predictor.kind}) does not score "
                             "sensor readings")
        out = []
        for r in readings:
            done = windows.add(r.machine_id, r.machine_type, r.ts_ms, r.values)
            if done is None:
                continue
            if not done.scored:
                self.stats.windows_skipped += 1
                continue
            out.append((done.source_id, done.vector))
        return out

    def _sparkplug(self, topic: str, payload: bytes) -> list[Readings]:
        """One Sparkplug message through the host session: its readings (maybe none)."""
        try:
            update = self.sparkplug.handle(topic, payload)
        except (SparkplugDecodeError, ValueError) as exc:
            self.stats.failed += 1
            self._event(logging.WARNING, f"Sparkplug message on {topic} not decoded: {exc}")
            return []
        if update.rebirth is not None:
            command_topic, command = update.rebirth
            self.stats.rebirths += 1
            self._event(logging.WARNING, f"{update.problem}: requesting a rebirth on "
                                         f"{command_topic}")
            try:
                self._command(command_topic, command)
            except Exception as exc:  # no client (yet), or the broker refused: try next time
                self._event(logging.ERROR, f"rebirth request on {command_topic} failed: {exc}")
        return update.readings

    @staticmethod
    def _infer(predictor: Predictor, data: np.ndarray) -> Prediction:
        if predictor.kind == "image":
            return predictor.predict_pixels(data)
        return predictor.predict_vector(data)

    def _fall_back(self, failed: Predictor, exc: Exception) -> Predictor | None:
        with self._swap:
            previous = self.previous
            if previous is None or self.active is not failed:
                current = self.active if self.active is not failed else None
            else:
                self.active, self.previous = previous, None
                current = previous
        if current is None:
            self._event(logging.ERROR, f"bundle {failed.bundle_id} failed to score: {exc}")
            return None
        self.stats.fallbacks += 1
        self.stats.refused[failed.bundle_id] = f"failed to score: {type(exc).__name__}: {exc}"
        self._remember(current.bundle_id)
        self._event(
            logging.ERROR,
            f"bundle {failed.bundle_id} failed to score ({type(exc).__name__}: {exc}); "
            f"fell back to {current.bundle_id}",
        )
        return current

    def prediction_payload(
        self, predictor: Predictor, source_id: str, prediction: Prediction, latency_ms: float
    ) -> bytes:
        doc = {
            "timestamp": int(time.time() * 1000),
            "bundleId": predictor.bundle_id,
            "model": predictor.model,
            "sourceId": source_id[:256],
            "value": prediction.value,
            "score": prediction.score,
            "threshold": predictor.threshold,
            "latencyMs": round(latency_ms, 3),
        }
        if prediction.detections is not None:  # part detection: missing slots and boxes
            doc["detections"] = prediction.detections
        return orjson.dumps(doc)

    def telemetry_payload(self, status: str | None = None, drain: bool = True) -> bytes:
        """A heartbeat: health figures and what happened since the previous one."""
        logs = list(self._events) if drain else []
        if drain:
            self._events.clear()
        if status is None:
            status = "degraded" if self._problem or self.active is None else "online"
        self._problem = False
        doc: dict[str, Any] = {
            "timestamp": int(time.time() * 1000),
            "status": status,
            "firmware": self.device.firmware[:64],
            "cpuPct": min(100.0, psutil.cpu_percent(interval=None)),
            "memPct": min(100.0, psutil.virtual_memory().percent),
            "uptimeS": round(time.monotonic() - self._started, 3),
            "logs": logs,
        }
        if self.active is not None:
            doc["bundleId"] = self.active.bundle_id
        return orjson.dumps(doc)

    # -- MQTT ---------------------------------------------------------------------------------

    @staticmethod
    def _properties() -> Properties:
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        props.UserProperty = [("schemaVersion", SCHEMA_VERSION)]
        return props

    def _mqtt_publish(self, topic: str, payload: bytes) -> None:
        assert self.client is not None
        self.client.publish(topic, payload, qos=1, properties=self._properties())

    def _mqtt_command(self, topic: str, payload: bytes) -> None:
        """A Sparkplug command (NCMD): QoS 0, not retained, as the spec and the gateway do."""
        if self.client is None:
            raise RuntimeError("not connected")
        self.client.publish(topic, payload, qos=0)

    def _make_client(self) -> mqtt.Client:
        client_id = self.config.client_id or f"mfg-edge-{self.config.edge_id}"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        configure_client(client, parse_broker_url(self.config.broker_url))
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.will_set(
            self.device.topic("telemetry"),
            self.telemetry_payload("offline", drain=False),
            qos=1,
            properties=self._will_properties(),
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    @staticmethod
    def _will_properties() -> Properties:
        props = Properties(PacketTypes.WILLMESSAGE)
        props.ContentType = "application/json"
        props.UserProperty = [("schemaVersion", SCHEMA_VERSION)]
        return props

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        client.subscribe([(topic, 1) for topic in self.device.sources])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(code.is_failure for code in reason_codes):
            self._event(logging.ERROR, f"subscription refused: {reason_codes}")
            return
        self._subscribed.set()

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        item = Inbound(message.topic, message.payload, message.mid, message.qos)
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)  # a full queue holds the broker back
                return
            except queue.Full:
                continue

    def _work(self) -> None:
        self._has_bundle.wait()  # inputs wait in the queue (and the broker) for a bundle
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                outputs = self.handle(item.topic, item.payload)
            except Exception as exc:  # a bug must not stop the line's inference
                self.stats.failed += 1
                self._event(logging.ERROR, f"internal error on {item.topic}: {exc!r}")
                outputs = []
            for topic, payload in outputs:
                self._publish(topic, payload)
            if item.qos > 0 and self.client is not None:
                self.client.ack(item.mid, item.qos)

    def _control(self) -> None:
        next_heartbeat = 0.0
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # a bug here must not stop heartbeats or polling
                self._event(logging.ERROR, f"internal error following the assignment: {exc!r}")
            now = time.monotonic()
            if now >= next_heartbeat and self.client is not None:
                self._publish(self.device.topic("telemetry"), self.telemetry_payload())
                next_heartbeat = now + self.config.heartbeat_s
            self._stop.wait(self.config.poll_s)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        psutil.cpu_percent(interval=None)  # prime the CPU meter
        self.refresh()
        self.client = self._make_client()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        # MQTT v5 flow control: the broker sends at most queue_size unacknowledged inputs,
        # so _on_message never blocks paho's network thread on a full queue (a blocked
        # thread misses keepalives: the broker drops us while we wait for a bundle).
        props.ReceiveMaximum = min(self.config.queue_size, 65535)
        broker = parse_broker_url(self.config.broker_url)
        self.client.connect_async(
            broker.host, broker.port, keepalive=30, clean_start=False, properties=props
        )
        self.client.loop_start()
        self._worker = threading.Thread(target=self._work, name="edge-worker", daemon=True)
        self._controller = threading.Thread(target=self._control, name="edge-control", daemon=True)
        self._worker.start()
        self._controller.start()

    def wait_online(self, timeout: float = 30.0) -> None:
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"edge {self.config.edge_id} not subscribed within {timeout}s")

    def stop(self, timeout: float = 30.0) -> None:
        """Score what is queued, say goodbye in a last heartbeat, disconnect."""
        self._stop.set()
        self._has_bundle.set()
        self._worker.join(timeout)
        self._controller.join(timeout)
        if self.client is not None:
            info = self.client.publish(
                self.device.topic("telemetry"), self.telemetry_payload("offline"), qos=1,
                properties=self._properties(),
            )
            info.wait_for_publish(timeout=5)
            self.client.disconnect()
            self.client.loop_stop()

    def run_forever(self) -> None:
        done = threading.Event()

        def _terminate(signum, frame) -> None:
            done.set()

        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
        self.start()
        log.info("edge %s on %s (%s)", self.config.edge_id, socket.gethostname(), self.store)
        while not done.wait(1.0):
            pass
        self.stop()
