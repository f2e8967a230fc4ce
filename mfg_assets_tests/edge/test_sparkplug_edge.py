"""A press edge on Sparkplug B: host session, windows equal to training, rebirth, live run.

The press line's stream is the simulator's Sparkplug edge node (``sim.sparkplug_node``). The
training side sees it through the real gateway router and silver typing; the edge sees the
raw Sparkplug messages. The windows must be equal, the edge must ask for a rebirth once per
interval (not per message), and on a real mosquitto a press bundle trained on those features
must publish predictions, survive lost births (one rebirth request) and recover.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import polars as pl
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mfg_assets.edge.bundle import build_bundle, threshold_entry
from mfg_assets.edge.predictor import window_preprocessing
from mfg_assets.edge.sparkplug_input import SparkplugInput, node_filter, sparkplug_node
from mfg_assets.edge.store import BundleStore, Device
from mfg_assets.edge.windows import RollingWindows, WindowSpec
from mfg_assets.fleet.export import export_onnx
from mfg_assets.gateway.routing import Router
from mfg_assets.lake import silver
from mfg_assets.ml import anomaly
from mfg_assets.ml.features import sensor_windows
from mfg_assets.settings import DEFAULT_CONTRACT
from mfg_assets.sim import SimConfig
from mfg_assets.sim.sparkplug_node import edge_node_messages
from mfg_assets.uns import sparkplug
from mfg_assets.uns import sparkplug_b_pb2 as pb
from mfg_assets.uns.contract import load_contract
from mfg_assets_tests.edge.helpers import runtime

PLANT = SimConfig().plant
GROUP, NODE = PLANT.sparkplug_group, PLANT.edge_node
PRESS_PLACE = {"enterprise": "acme", "site": "detroit", "area": "press", "line": "press1",
               "cell": "cell01"}
N_BIRTHS = 1 + len(PLANT.press_machines)  # NBIRTH, then one DBIRTH per machine


@pytest.fixture(scope="module")
def stream():
    """6 h of the press line's Sparkplug session (births, alias-only DDATA, NDEATH)."""
    return list(edge_node_messages(SimConfig(duration_h=6, sources=("press",), seed=7)))


@pytest.fixture(scope="module")
def features(stream) -> pl.DataFrame:
    """The training side's windows: gateway router -> bronze -> silver -> features."""
    router = Router(load_contract(DEFAULT_CONTRACT), source="test")
    for message in stream:
        assert router.route(message.topic, message.payload, message.ts_ms)
    bronze = router.take("batch-1").tables["bronze.sensor_readings"]
    return sensor_windows(silver.type_sensor_readings(bronze), every="10m")


def _edge_windows(messages, spec: WindowSpec):
    host, windows, done = SparkplugInput(), RollingWindows(spec), []
    for message in messages:
        for r in host.handle(message.topic, message.payload).readings:
            if (w := windows.add(r.machine_id, r.machine_type, r.ts_ms, r.values)) is not None:
                done.append(w)
    return host, done


def test_windows_from_ddata_equal_the_training_features(stream, features):
    columns = sorted(c for c in features.columns if "__" in c)
    for machine_type, machine in (("press", "press-01"), ("cnc", "cnc-02")):
        training = features.filter(pl.col("machine_id") == machine)
        host, done = _edge_windows(stream, WindowSpec(machine_type, 600, tuple(columns), 30))
        mine = [w for w in done if w.machine_id == machine]
        # the last window stays open on the edge (the NDEATH completes nothing)
        assert len(mine) == training.height - 1 == 35
        assert {w.machine_id for w in done} == {
            m.machine_id for m in PLANT.press_machines if m.machine_type == machine_type}
        expected = training.select(columns).to_numpy().astype(np.float32)
        for k, window in enumerate(mine):
            assert window.scored and window.machine_type == machine_type
            start = training.get_column("window_start")[k]
            assert window.start_ms == int(start.timestamp() * 1000)
            np.testing.assert_allclose(window.vector, expected[k], rtol=1e-5, atol=1e-6)
        assert host.rebirths_sent == 0 and host.dropped == 0


def _resequenced(payload: bytes, seq: int, alias_offset: int = 0) -> bytes:
    """The same Sparkplug payload with another seq (and its aliases shifted)."""
    doc = pb.Payload.FromString(payload)
    doc.seq = seq
    for metric in doc.metrics:
        if metric.HasField("alias"):
            metric.alias += alias_offset
    return doc.SerializeToString()


def test_rebirth_requests_are_bounded_per_node_and_data_resumes_after_the_births(stream):
    clock = [0.0]
    host = SparkplugInput(min_rebirth_interval_s=5.0, clock=lambda: clock[0])
    births, data = stream[:N_BIRTHS], stream[N_BIRTHS:-1]
    # Joined late: 50 DDATA before any birth -> one request, not 50
    late = [host.handle(m.topic, m.payload) for m in data[:50]]
    commands = [u.rebirth for u in late if u.rebirth is not None]
    assert len(commands) == 1 and commands[0][0] == f"spBv1.0/{GROUP}/NCMD/{NODE}"
    request = sparkplug.decode_payload(commands[0][1])["metrics"][0]
    assert request["name"] == sparkplug.REBIRTH_METRIC and request["value"] is True
    assert all("before NBIRTH" in u.problem and not u.readings for u in late)
    assert host.rebirths_suppressed == 49 and host.dropped == 50
    clock[0] = 5.0  # the interval has passed: the node is asked again
    assert host.handle(data[50].topic, data[50].payload).rebirth is not None
    # The node answers with its births; its data then gives readings
    seq = 0
    for message in births:
        assert host.handle(message.topic, _resequenced(message.payload, seq)).rebirth is None
        seq += 1
    for message in data[51:80]:
        update = host.handle(message.topic, _resequenced(message.payload, seq))
        seq = (seq + 1) & 0xFF
        assert update.rebirth is None and update.problem is None and len(update.readings) == 1
    assert set(update.readings[0].values) == {"vibration_rms", "spindle_temp", "power_kw"}
    # A seq gap: the flagged message gives no readings and one request (clock moved on)
    clock[0] = 60.0
    gap = host.handle(data[80].topic, _resequenced(data[80].payload, seq + 3))
    assert gap.problem == f"seq gap: expected {seq}, got {seq + 3}" and gap.rebirth is not None
    assert gap.readings == []
    after = host.handle(data[81].topic, _resequenced(data[81].payload, seq + 4))
    assert after.problem is None and after.readings  # the session resynced: no storm
    assert host.rebirths_sent == 3


def test_sparkplug_source_filters():
    assert sparkplug_node(node_filter(GROUP, NODE)) == (GROUP, NODE)
    for other in ("spBv1.0/#", f"spBv1.0/{GROUP}/DDATA/{NODE}/#", "acme/detroit/+/+/+/+/sensors",
                  f"spBv1.0/{GROUP}/+/{NODE}/press-01"):
        assert sparkplug_node(other) is None
    with pytest.raises(ValueError):
        node_filter(GROUP, "a/b")


# -- the press edge on a real broker ---------------------------------------------------------


@pytest.fixture(scope="module")
def press_model(features, tmp_path_factory):
    """A press autoencoder trained (quickly) by the champion code on the silver features."""
    trained = anomaly.train(features, {"epochs": 20, "block": "1h"})
    spec = trained.info["machine_types"]["press"]
    columns = list(spec["columns"])
    rows = features.filter(pl.col("machine_type") == "press")
    x = rows.select(pl.col(c).cast(pl.Float32) for c in columns).to_numpy()
    onnx = export_onnx(trained.model.net("press"), x[:1],
                       tmp_path_factory.mktemp("press") / "press.onnx")
    return onnx, columns, float(spec["threshold"])


class PressNode:
    """The press line's Sparkplug node on the broker: publishes, and hears its NCMDs."""

    def __init__(self, port: int) -> None:
        self.commands: list[tuple[float, dict]] = []
        self.rebirth = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id="press1-gw-test", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"spBv1.0/{GROUP}/NCMD/{NODE}", qos=0)
        self.client.loop_start()
        time.sleep(0.3)

    def _on_message(self, client, userdata, message) -> None:
        doc = sparkplug.decode_payload(message.payload)
        self.commands.append((time.monotonic(), doc))
        if any(m.get("name") == sparkplug.REBIRTH_METRIC for m in doc["metrics"]):
            self.rebirth.set()

    def publish(self, messages: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


@pytest.mark.integration
def test_press_edge_scores_sparkplug_windows_live_and_recovers_lost_births(
    broker, stream, press_model, keys, tmp_path
):
    onnx, columns, threshold = press_model
    bundle = build_bundle(
        tmp_path / "press-bundle", edge_id="edge-press1", model_file=onnx,
        preprocessing=window_preprocessing(WindowSpec("press", 600, tuple(columns), 30)),
        threshold=threshold_entry(np.linspace(0, threshold, 50), 0.999999, "test"),
        model_name="sensor_anomaly", model_version=1, private_key=keys[0],
    )
    store = BundleStore(tmp_path / "store")
    store.publish(bundle.path)
    store.assign("edge-press1", bundle.bundle_id)
    device = Device("edge-press1", "line", PRESS_PLACE,
                    ("acme/detroit/press/press1/+/+/sensors", node_filter(GROUP, NODE)))
    edge = runtime(tmp_path, store, keys[1], device=device,
                   broker_url=f"mqtt://127.0.0.1:{broker.port}", poll_s=0.2, heartbeat_s=60,
                   rebirth_min_interval_s=120.0)
    predictions: list[dict] = []
    watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                          client_id="press-watch", protocol=mqtt.MQTTv5)
    watcher.on_message = lambda c, u, m: predictions.append(orjson.loads(m.payload))
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe(device.topic("predictions"), qos=1)
    watcher.loop_start()
    edge.start()
    node = PressNode(broker.port)
    try:
        edge.wait_online(15)
        births, data = stream[:N_BIRTHS], stream[N_BIRTHS:-1]
        per_hour = 3 * 360  # DDATA of three machines every 10 s
        # 1. births and an hour of data: the press windows are scored
        first = births + data[:per_hour]
        node.publish([(m.topic, m.payload) for m in first])
        _wait(lambda: len(predictions) >= 5)
        assert {p["sourceId"].split("/")[0] for p in predictions} == {"press-01"}
        for p in predictions:
            assert p["bundleId"] == bundle.bundle_id and isinstance(p["value"], bool)
            assert p["threshold"] == pytest.approx(threshold, rel=1e-5)
        # 2. the node rebirths with new aliases, but its births are lost: the first data
        # after them is a seq gap, then every message carries unknown aliases
        seq = N_BIRTHS  # the lost NBIRTH had seq 0, its DBIRTHs the next ones
        lost = data[per_hour:per_hour + 360]
        stretch = []
        for message in lost:
            stretch.append((message.topic, _resequenced(message.payload, seq, 1000)))
            seq = (seq + 1) & 0xFF
        before = len(predictions)
        node.publish(stretch)
        assert node.rebirth.wait(15), "no rebirth request from the edge"
        _wait(lambda: edge.sparkplug.dropped >= len(stretch))
        assert len(node.commands) == 1, "one rebirth request for 360 flagged messages"
        assert edge.stats.rebirths == 1 and edge.sparkplug.rebirths_suppressed == 359
        # 3. the node answers with its births (new aliases), then another hour of data
        answer = [(m.topic, _resequenced(m.payload, k, 1000)) for k, m in enumerate(births)]
        seq = N_BIRTHS
        rest = data[per_hour + 360:2 * per_hour + 360]
        for message in rest:
            answer.append((message.topic, _resequenced(message.payload, seq, 1000)))
            seq = (seq + 1) & 0xFF
        reborn_ms = rest[0].ts_ms - rest[0].ts_ms % 600_000  # its window's start
        node.publish(answer)
        # about an hour of windows after the rebirth (the first may lack samples)
        _wait(lambda: sum(int(p["sourceId"].split("/")[1]) >= reborn_ms
                          for p in predictions) >= 4)
        assert len(node.commands) == 1 and edge.stats.failed == 0
        assert len(predictions) > before
    finally:
        node.close()
        edge.stop(10)
        watcher.loop_stop()
        watcher.disconnect()


def test_the_stack_registers_the_press_edge_on_its_node_and_lets_it_ask_only_that_node():
    from mfg_assets.cli import _sim_device
    from mfg_assets.stack.broker import acl_text
    from mfg_assets.stack.launch import DEFAULT_EDGES

    assert "edge-press1" in DEFAULT_EDGES
    press, weld = _sim_device("edge-press1"), _sim_device("edge-weld1")
    assert node_filter(GROUP, NODE) in press.sources
    blocks = acl_text("acme", [press, weld]).split("\n\n")
    mine = next(b for b in blocks if b.startswith("user edge-press1")).splitlines()
    assert f"topic read spBv1.0/{GROUP}/+/{NODE}/#" in mine
    assert [line for line in mine if "spBv1.0" in line and "write" in line] == [
        f"topic write spBv1.0/{GROUP}/NCMD/{NODE}"]
    assert not any("spBv1.0" in b for b in blocks if b.startswith("user edge-weld1"))
