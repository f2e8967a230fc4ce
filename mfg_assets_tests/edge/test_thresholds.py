"""Per-edge thresholds: each edge calibrates on its own normal data, and it matters.

cam-02 sits under different light (brighter, less contrast, noisier; see the simulator's
PlantLayout). A model that sees raw grey levels scores cam-02's normal images differently,
so one camera's threshold would misjudge the other camera's good parts."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mfg_assets.edge.bundle import build_bundle, threshold_entry, verify_bundle
from mfg_assets.edge.predictor import Predictor, calibration_scores, image_preprocessing
from mfg_assets.fleet.export import export_onnx
from mfg_assets_tests.edge.conftest import sim_images

QUANTILE = 0.99


class GreyLevelScore(nn.Module):
    """A one-class scorer on fixed-normalised pixels: distance of the image's mean grey level
    from a reference, plus its roughness (stands in for an autoencoder's error)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3))
        rough = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
        return (mean - 0.2).abs() + rough


def test_two_cameras_get_different_thresholds_that_each_fit_their_own_data(tmp_path, keys):
    onnx_path = export_onnx(GreyLevelScore(), np.zeros((1, 1, 64, 64), np.float32),
                            tmp_path / "score.onnx")
    spec = image_preprocessing(64, normalisation={"type": "fixed", "mean": 128.0, "std": 64.0},
                               output="score")
    fresh, predictors = {}, {}
    for edge, camera in (("edge-cam01", "cam-01"), ("edge-cam02", "cam-02")):
        recent, _ = sim_images(camera, 200, seed=11, labels=("ok",))
        fresh[edge], _ = sim_images(camera, 200, seed=12, labels=("ok",))
        scores = calibration_scores(onnx_path, spec, recent)  # the edge's own normal data
        bundle = build_bundle(
            tmp_path / edge, edge_id=edge, model_file=onnx_path, preprocessing=spec,
            threshold=threshold_entry(scores, QUANTILE, f"{camera} ok images, last 200"),
            model_name="vision_oneclass", model_version=1, private_key=keys[0],
        )
        predictors[edge] = Predictor(verify_bundle(bundle.path, keys[1]))

    def alarm_rate(edge: str, threshold: float) -> float:
        return float((calibration_scores(onnx_path, spec, fresh[edge]) > threshold).mean())

    own = {edge: predictors[edge].threshold for edge in predictors}
    assert abs(own["edge-cam01"] - own["edge-cam02"]) > 0.05
    for edge in predictors:  # about 1 - QUANTILE on fresh normal images of its own camera
        assert alarm_rate(edge, own[edge]) <= 0.05
    # The camera with the higher threshold, judged by the other camera's: false alarms galore.
    high, low = sorted(own, key=own.get, reverse=True)
    assert alarm_rate(high, own[low]) > 0.5
