"""The edge runtime without a broker: scoring, contract, refusal, last good, fallback."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import torch

from mfg_assets.edge.bundle import build_bundle, threshold_entry
from mfg_assets.edge.predictor import window_preprocessing
from mfg_assets.edge.store import BundleStore, Device
from mfg_assets.edge.windows import WindowSpec, columns_of
from mfg_assets.fleet.export import export_onnx
from mfg_assets.ml.anomaly import TypeAutoencoder
from mfg_assets.settings import DEFAULT_CONTRACT
from mfg_assets.sim import SimConfig
from mfg_assets.sim.welding import SENSORS, welder_messages
from mfg_assets.uns.contract import load_contract
from mfg_assets_tests.edge.helpers import inspection_messages, runtime


@pytest.fixture(scope="module")
def contract():
    return load_contract(DEFAULT_CONTRACT)


@pytest.fixture
def store(tmp_path):
    return BundleStore(tmp_path / "store")


def _deploy(store, bundle, edge_id="edge-cam01"):
    store.publish(bundle.path)
    store.assign(edge_id, bundle.bundle_id)


def test_predictions_and_telemetry_follow_the_contract(
    make_vision_bundle, store, keys, tmp_path, contract
):
    bundle = make_vision_bundle()
    _deploy(store, bundle)
    edge = runtime(tmp_path, store, keys[1])
    assert edge.refresh()
    published = [p for message in inspection_messages(8) for p in edge.handle(*message)]
    assert len(published) == 8
    for topic, payload in published:
        channel, message, errors = contract.validate(topic, payload)
        assert errors == [] and channel.id == "edgePredictions" and message == "EdgePrediction"
        doc = orjson.loads(payload)
        assert doc["bundleId"] == bundle.bundle_id and doc["model"] == "vision_defect"
        assert doc["value"] in ("ok", "scratch", "dent", "missing_part")
        assert doc["threshold"] == pytest.approx(0.5, abs=1e-5) and doc["latencyMs"] > 0
    assert topic == "acme/detroit/assembly/final1/inspect01/edge-cam01/predictions"
    telemetry = edge.telemetry_payload()
    channel, _, errors = contract.validate(edge.device.topic("telemetry"), telemetry)
    assert errors == [] and channel.id == "edgeTelemetry"
    doc = orjson.loads(telemetry)
    assert doc["status"] == "online" and doc["bundleId"] == bundle.bundle_id
    assert any("active" in line["message"] for line in doc["logs"])


@pytest.mark.parametrize("tamper", ["model_byte", "manifest", "signature"])
def test_tampered_bundle_is_refused_and_the_last_good_kept(
    tamper, make_vision_bundle, store, keys, tmp_path, contract
):
    good, bad = make_vision_bundle(version=1), make_vision_bundle(version=2)
    _deploy(store, good)
    edge = runtime(tmp_path, store, keys[1])
    edge.refresh()
    store.publish(bad.path)
    stored = tmp_path / "store" / "bundles" / bad.bundle_id
    if tamper == "model_byte":
        data = bytearray((stored / "model.onnx").read_bytes())
        data[-10] ^= 0xFF
        (stored / "model.onnx").write_bytes(bytes(data))
        expected = "checksum mismatch of file model.onnx"
    elif tamper == "manifest":
        text = (stored / "manifest.json").read_text().replace('"version": "2"', '"version": "9"')
        (stored / "manifest.json").write_text(text)
        expected = "bad signature"
    else:
        (stored / "manifest.sig").unlink()
        expected = "unsigned"
    store.assign("edge-cam01", bad.bundle_id)
    assert not edge.refresh()
    assert edge.active.bundle_id == good.bundle_id
    assert expected in edge.stats.refused[bad.bundle_id]
    (_topic, payload), = edge.handle(*inspection_messages(1)[0])
    assert orjson.loads(payload)["bundleId"] == good.bundle_id
    heartbeat = edge.telemetry_payload()
    assert contract.validate(edge.device.topic("telemetry"), heartbeat)[2] == []
    doc = orjson.loads(heartbeat)
    assert doc["status"] == "degraded"
    assert any(line["level"] == "ERROR" and expected in line["message"] for line in doc["logs"])
    assert not edge.refresh()  # refused once, not retried on every poll
    # A restart with the bad assignment still in place comes back on the last good bundle.
    restarted = runtime(tmp_path, store, keys[1])
    restarted.refresh()
    assert restarted.active.bundle_id == good.bundle_id


def test_a_bundle_that_fails_to_run_falls_back_to_the_previous(
    make_vision_bundle, store, keys, tmp_path
):
    old, new = make_vision_bundle(version=1), make_vision_bundle(version=2)
    _deploy(store, old)
    edge = runtime(tmp_path, store, keys[1])
    edge.refresh()
    _deploy(store, new)
    assert edge.refresh() and edge.active.bundle_id == new.bundle_id

    def broken(x):
        raise RuntimeError("onnxruntime: out of memory")

    edge.active.decide = broken  # the new bundle loaded and warmed up, then fails on data
    (_topic, payload), = edge.handle(*inspection_messages(1)[0])
    assert orjson.loads(payload)["bundleId"] == old.bundle_id
    assert edge.active.bundle_id == old.bundle_id and edge.stats.fallbacks == 1
    assert "failed to score" in edge.stats.refused[new.bundle_id]
    assert not edge.refresh()  # the failed bundle is not taken up again


def test_a_bundle_for_another_edge_is_refused(make_vision_bundle, store, keys, tmp_path):
    _deploy(store, make_vision_bundle(edge_id="edge-cam02"))
    edge = runtime(tmp_path, store, keys[1])
    assert not edge.refresh() and edge.active is None
    assert "built for edge-cam02" in next(iter(edge.stats.refused.values()))


def test_line_edge_scores_completed_sensor_windows(store, keys, tmp_path, contract):
    columns = columns_of([name for name, _ in SENSORS])
    torch.manual_seed(0)
    net = TypeAutoencoder(len(columns), 16, 4).eval()
    onnx_path = export_onnx(net, np.ones((1, len(columns)), np.float32), tmp_path / "ae.onnx")
    spec = WindowSpec("welder", 600, tuple(columns), min_samples=30)
    bundle = build_bundle(
        tmp_path / "ae-bundle", edge_id="edge-weld1", model_file=onnx_path,
        preprocessing=window_preprocessing(spec),
        threshold=threshold_entry(np.linspace(0, 2, 50), 0.99, "test"),
        model_name="sensor_anomaly", model_version=1, private_key=keys[0],
    )
    _deploy(store, bundle, "edge-weld1")
    device = Device("edge-weld1", "line", {"enterprise": "acme", "site": "detroit",
                    "area": "body", "line": "weld1", "cell": "cell01"},
                    ("acme/detroit/body/weld1/+/+/sensors",))
    edge = runtime(tmp_path, store, keys[1], device=device)
    edge.refresh()
    config = SimConfig(duration_h=0.5, sources=("welding",))
    messages = sorted(
        (m for w in config.plant.welders[:2] for m in welder_messages(config, w)),
        key=lambda m: m.ts_ms,
    )
    published = [p for m in messages for p in edge.handle(m.topic, m.payload)]
    assert len(published) == 2 * 2  # two welders, two completed 10-minute windows each
    for topic, payload in published:
        assert contract.validate(topic, payload)[2] == []
        doc = orjson.loads(payload)
        assert isinstance(doc["value"], bool) and np.isfinite(doc["score"])
    assert {orjson.loads(p)["sourceId"].split("/")[0] for _, p in published} == {
        "weld-01", "weld-02"}
