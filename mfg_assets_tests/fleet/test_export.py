"""ONNX export parity and the int8 gate (within one point, else fp32 with the reason)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mfg_assets.edge.bundle import build_bundle, threshold_entry
from mfg_assets.edge.predictor import session, window_preprocessing
from mfg_assets.edge.windows import WindowSpec, columns_of
from mfg_assets.fleet.export import QuantCheck, export_model, export_onnx, run
from mfg_assets.ml.anomaly import TypeAutoencoder
from mfg_assets_tests.edge import conftest as edge_fixtures

# the edge room's fixtures: a trained TinyCNN, its ONNX file, a signing keypair
trained_cnn = edge_fixtures.trained_cnn
cnn_onnx = edge_fixtures.cnn_onnx
keys = edge_fixtures.keys

def test_onnx_matches_torch_for_any_batch_size(trained_cnn, cnn_onnx):
    net, x, _ = trained_cnn
    sess = session(cnn_onnx)
    for batch in (1, 7):
        with torch.no_grad():
            expected = net(torch.from_numpy(x[:batch])).numpy()
        np.testing.assert_allclose(run(sess, x[:batch]), expected, rtol=1e-3, atol=1e-4)
    assert sess.get_inputs()[0].shape[0] == "batch"  # dynamic batch axis


def test_opset_below_17_is_refused(trained_cnn, tmp_path):
    net, x, _ = trained_cnn
    with pytest.raises(ValueError, match="opset 17"):
        export_onnx(net, x[:1], tmp_path / "m.onnx", opset=13)


def test_static_int8_cnn_stays_within_one_point_of_fp32(trained_cnn, tmp_path):
    net, x, y = trained_cnn
    result = export_model(
        net, x[:1], tmp_path, quantization="static", calibration=x[:64],
        check=QuantCheck(x, labels=y),
    )
    metrics = result.metrics
    assert metrics["accuracy_fp32"] > 0.7, "the test model should have learned something"
    assert result.precision == "int8", result.reason
    assert metrics["accuracy_fp32"] - metrics["accuracy_int8"] <= 0.01


def _autoencoder_and_features(seed: int = 0) -> tuple[TypeAutoencoder, np.ndarray, list[str]]:
    """An autoencoder fitted briefly on correlated, load-scaled 'sensor' features."""
    rng = np.random.default_rng(seed)
    columns = columns_of(["current", "voltage"], ["mean", "std", "min", "max"])
    load = rng.uniform(0.5, 1.0, (600, 1))
    x = (load * np.array([[200, 4, 150, 240, 23, 0.3, 20, 26]])
         * rng.normal(1, 0.02, (600, 8))).astype(np.float32)
    torch.manual_seed(seed)
    net = TypeAutoencoder(len(columns), 16, 3)
    with torch.no_grad():
        t = net.transform(torch.from_numpy(x))
        net.mean.copy_(t.mean(0))
        net.std.copy_(t.std(0))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    z = net.standardise(torch.from_numpy(x))
    for _ in range(150):
        loss = ((net.reconstruct(z) - z) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net.eval(), x, columns


def test_dynamic_int8_autoencoder_agrees_with_fp32_decisions(tmp_path):
    net, x, _ = _autoencoder_and_features()
    faulty = x[:100].copy()
    faulty[:, 1] *= 1.3  # voltage up against current: what contact-tip wear looks like
    inputs = np.concatenate([x[300:], faulty])
    with torch.no_grad():
        threshold = float(np.quantile(net(torch.from_numpy(x[:300])).numpy(), 0.99))
    inputs[0, 2] = np.nan  # a missing feature is handled inside the graph
    result = export_model(
        net, inputs[:1], tmp_path, quantization="dynamic",
        check=QuantCheck(inputs, threshold=threshold),
    )
    assert result.precision == "int8", result.reason
    assert result.metrics["agreement"] >= 0.99
    assert np.isfinite(run(session(result.path), inputs[:1])).all()


def test_fp32_fallback_is_recorded_in_the_manifest(tmp_path, keys):
    net, x, columns = _autoencoder_and_features()
    with torch.no_grad():
        threshold = float(np.quantile(net(torch.from_numpy(x)).numpy(), 0.5))
    # An impossible budget: int8 must lose less than nothing, so fp32 is kept.
    check = QuantCheck(x, threshold=threshold, max_loss=-1.0)
    result = export_model(net, x[:1], tmp_path, quantization="dynamic", check=check)
    assert result.precision == "fp32"
    assert "kept fp32" in result.reason
    spec = WindowSpec("welder", 600, tuple(columns), 30)
    bundle = build_bundle(
        tmp_path / "bundle", edge_id="edge-weld1", model_file=result.path,
        preprocessing=window_preprocessing(spec),
        threshold=threshold_entry(net(torch.from_numpy(x)).detach().numpy(), 0.99, "test"),
        model_name="sensor_anomaly", model_version=2, export=result.manifest_entry(),
        private_key=keys[0],
    )
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    assert manifest["model"]["precision"] == "fp32"
    assert "kept fp32" in manifest["model"]["reason"]
