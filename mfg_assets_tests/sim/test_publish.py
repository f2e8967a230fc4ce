"""publish() against a real mosquitto: every message arrives, in order, with its headers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mfg_assets.sim import SimConfig, iter_messages, publish
from mfg_assets.sim.publish import _connect
from mfg_assets.sim.sparkplug_node import ndeath
from mfg_assets.uns import sparkplug
from mfg_assets.uns.broker import BrokerAddress, parse_broker_url

pytestmark = pytest.mark.integration

CONFIG = SimConfig(seed=17, duration_h=0.5, sensor_period_s=10.0, image_period_s=30.0)


class Recorder:
    """A subscriber on '#' that keeps (topic, payload, properties) in arrival order."""

    def __init__(self, url: str) -> None:
        broker = parse_broker_url(url)
        host, port = broker.host, broker.port
        self.messages: list[tuple[str, bytes, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"recorder-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.ready.wait(10), "subscriber did not get its subscription acknowledged"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        headers = {
            "content_type": getattr(props, "ContentType", None),
            "user": dict(getattr(props, "UserProperty", []) or []),
        }
        with self.lock:
            self.messages.append((msg.topic, msg.payload, headers))

    def wait_for(self, count: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.messages) < count:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_publish_delivers_the_whole_stream_in_order(mosquitto: str) -> None:
    expected = list(iter_messages(CONFIG))
    recorder = Recorder(mosquitto)
    try:
        counts = publish(CONFIG, mosquitto, qos=1, window=200)
        recorder.wait_for(len(expected))
    finally:
        recorder.close()
    assert counts["total"] == len(expected)
    assert {k: v for k, v in counts.items() if k != "total"} == dict(
        Counter(m.channel for m in expected)
    )
    got = recorder.messages
    assert len(got) == len(expected)
    # One publisher, one session: the broker keeps the publish order.
    assert [(t, p) for t, p, _ in got] == [(m.topic, m.payload) for m in expected]
    for (_, _, headers), m in zip(got, expected, strict=True):
        assert headers["content_type"] == m.content_type
        if m.is_json:
            assert headers["user"] == {"schemaVersion": "1.0.0"}


def test_publish_at_a_time_factor_paces_the_stream(mosquitto: str) -> None:
    config = SimConfig(duration_h=1 / 60, sources=("welding",), sensor_period_s=10.0)
    started = time.monotonic()
    counts = publish(config, mosquitto, speed=60.0)  # one simulated minute in ~1 s
    elapsed = time.monotonic() - started
    assert counts["total"] == len(list(iter_messages(config)))
    assert 0.6 < elapsed < 5.0


def test_the_broker_announces_ndeath_when_the_node_drops(mosquitto: str) -> None:
    recorder = Recorder(mosquitto)
    try:
        client, _ = _connect(CONFIG, mosquitto, "sim-crash-test", timeout_s=10)
        # Drop the TCP connection without DISCONNECT, as a crashed gateway would.
        client.loop_stop()
        client.socket().close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            "/NDEATH/" in t for t, *_ in recorder.messages
        ):
            time.sleep(0.05)
    finally:
        recorder.close()
    deaths = [(t, p) for t, p, _ in recorder.messages if "/NDEATH/" in t]
    will = ndeath(CONFIG)
    assert deaths == [(will.topic, will.payload)]
    doc = sparkplug.decode_payload(deaths[0][1])
    assert doc["metrics"][0]["name"] == "bdSeq"


def test_an_unreachable_broker_is_a_clear_error() -> None:
    with pytest.raises(ConnectionError, match="cannot reach MQTT broker"):
        publish(CONFIG, "mqtt://127.0.0.1:1", timeout_s=2)


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("mqtt://broker:1884", BrokerAddress("broker", 1884, False)),
        ("mqtt://u%40x:p%3Aw@host", BrokerAddress("host", 1883, False, "u@x", "p:w")),
        ("mqtts://host", BrokerAddress("host", 8883, True)),
    ],
)
def test_broker_urls(url: str, parsed: BrokerAddress, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MFG_BROKER_USERNAME", raising=False)
    monkeypatch.delenv("MFG_BROKER_PASSWORD", raising=False)
    assert parse_broker_url(url) == parsed


def test_bad_broker_url_is_rejected() -> None:
    with pytest.raises(ValueError, match="scheme"):
        parse_broker_url("http://host")
