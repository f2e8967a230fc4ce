"""Publish a simulated run live to an MQTT broker (paho-mqtt 2.x, MQTT v5)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mfg_assets.sim.config import SimConfig
from mfg_assets.sim.messages import JSON, SPARKPLUG
from mfg_assets.sim.sparkplug_node import ndeath
from mfg_assets.sim.stream import iter_messages, with_progress
from mfg_assets.uns.broker import configure_client, parse_broker_url

SCHEMA_VERSION = "1.0.0"  # info.version of the plant contract the JSON payloads follow


def _properties(content_type: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = content_type
    if content_type == JSON:
        props.UserProperty = [("schemaVersion", SCHEMA_VERSION)]
    return props


def _connect(
    config: SimConfig,
    broker_url: str,
    client_id: str | None,
    timeout_s: float,
    window: int = 1000,
) -> tuple[mqtt.Client, int]:
    """A connected client with its network loop running, and the broker's Receive Maximum."""
    broker = parse_broker_url(broker_url)
    where = f"{broker.host}:{broker.port}"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or f"mfg-sim-{config.plant.site}-{config.seed}",
        protocol=mqtt.MQTTv5,
    )
    configure_client(client, broker)
    if "press" in config.sources and config.plant.press_machines:
        # Sparkplug: the broker announces the node's death if this session drops.
        will = ndeath(config)
        client.will_set(will.topic, will.payload, qos=1, retain=False)
    client.max_inflight_messages_set(window)  # only settable before connecting
    connected = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, props: Any) -> None:
        outcome["reason"] = reason
        outcome["receive_max"] = getattr(props, "ReceiveMaximum", 65535)
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except OSError as exc:
        raise ConnectionError(f"cannot reach MQTT broker at {where}: {exc}") from exc
    client.loop_start()
    if not connected.wait(timeout_s):
        client.loop_stop()
        raise ConnectionError(f"MQTT broker at {where} did not accept within {timeout_s}s")
    reason = outcome["reason"]
    if getattr(reason, "is_failure", False):
        client.loop_stop()
        raise ConnectionError(f"MQTT broker at {where} refused the connection: {reason}")
    return client, int(outcome["receive_max"])


def publish(
    config: SimConfig,
    broker_url: str,
    qos: int = 1,
    speed: float | None = None,
    *,
    client_id: str | None = None,
    window: int = 1000,
    timeout_s: float = 30.0,
    fast_until_ms: int | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, int]:
    """Publish the run's message stream to ``broker_url``; returns counts per channel and total.

    ``speed=None`` publishes as fast as the broker acknowledges, keeping at most ``window``
    messages in flight; ``speed=60`` plays one simulated minute per wall-clock second.
    ``fast_until_ms``: messages before this simulated time go as fast as possible, the pace
    applies from there (a backlog first, then live). ``stop``: end early once it is set.
    ``on_progress(phase, done, total)``: simulated minutes published (``with_progress``).
    """
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be positive or None, got {speed}")
    if qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
    window = max(1, min(window, 65535))
    client, receive_max = _connect(config, broker_url, client_id, timeout_s, window)
    # paho does not honour the broker's Receive Maximum (MQTT v5); staying within it here
    # keeps a broker with a small limit (mosquitto's default is 20) from disconnecting us.
    window = min(window, receive_max)
    props = {JSON: _properties(JSON), SPARKPLUG: _properties(SPARKPLUG)}
    pending: deque[mqtt.MQTTMessageInfo] = deque()
    counts: Counter[str] = Counter()
    wall0 = time.monotonic()
    ts0: int | None = None

    def settle(info: mqtt.MQTTMessageInfo) -> None:
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise TimeoutError(f"broker did not acknowledge message {info.mid} in {timeout_s}s")

    try:
        for message in with_progress(iter_messages(config), config, on_progress):
            if stop is not None and stop.is_set():
                break
            paced = fast_until_ms is None or message.ts_ms >= fast_until_ms
            if speed is not None and paced:
                if ts0 is None:
                    wall0, ts0 = time.monotonic(), message.ts_ms
                delay = wall0 + (message.ts_ms - ts0) / 1000.0 / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            info = client.publish(
                message.topic, message.payload, qos=qos, properties=props[message.content_type]
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(
                    f"publish to {message.topic} failed: {mqtt.error_string(info.rc)}"
                )
            pending.append(info)
            if len(pending) >= window:
                settle(pending.popleft())
            counts[message.channel] += 1
        while pending:
            settle(pending.popleft())
    finally:
        client.disconnect()
        client.loop_stop()
    out = dict(sorted(counts.items()))
    out["total"] = sum(counts.values())
    return out
