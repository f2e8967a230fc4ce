"""Batch scoring's vectorised decisions are the edge's own decisions, row for row."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from mfg_assets.edge.predictor import Predictor, image_preprocessing, window_preprocessing
from mfg_assets.edge.windows import WindowSpec
from mfg_assets.fleet.export import export_onnx

CLASSES = ["ok", "scratch", "dent", "missing_part"]


class Logits(nn.Module):
    """Four class logits from a 4x4 image: the mean of each quadrant row, scaled."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, 4, 4).mean(dim=2) * 3.0


class SumScore(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=1, keepdim=True)


def _predictors(tmp_path):
    windows = export_onnx(SumScore(), np.zeros((1, 3), np.float32), tmp_path / "w.onnx")
    images = export_onnx(Logits(), np.zeros((1, 1, 4, 4), np.float32), tmp_path / "i.onnx")
    window = Predictor.from_files(windows, window_preprocessing(
        WindowSpec("welder", 600.0, ("a__mean", "b__mean", "c__mean"), 1)), threshold=0.5)
    classed = Predictor.from_files(images, image_preprocessing(4, CLASSES), threshold=0.6)
    unnamed = Predictor.from_files(images, image_preprocessing(4, None), threshold=0.6)
    return window, classed, unnamed


def test_vectorised_decisions_equal_decide(tmp_path):
    window, classed, unnamed = _predictors(tmp_path)

    @settings(max_examples=60, deadline=None)
    @given(arrays(np.float32, (16, 3), elements=st.floats(-5, 5, width=32)),
           arrays(np.float32, (16, 1, 4, 4), elements=st.floats(-5, 5, width=32)))
    def check(x_windows, x_images):
        for predictor, x in ((window, x_windows), (classed, x_images), (unnamed, x_images)):
            scores, values = predictor.decide_arrays(x)
            expected = predictor.decide(x)
            np.testing.assert_allclose(scores, [p.score for p in expected], rtol=1e-6)
            texts = [("true" if p.value else "false") if isinstance(p.value, bool)
                     else str(p.value) for p in expected]
            assert values.tolist() == texts

    check()
