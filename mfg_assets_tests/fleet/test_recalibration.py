"""The next bundle's threshold follows the operators' verdicts on an edge's flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from mfg_assets.edge.predictor import window_preprocessing
from mfg_assets.edge.windows import WindowSpec
from mfg_assets.fleet.bundles import recalibrate_from_verdicts
from mfg_assets.fleet.export import export_onnx
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets_tests.labeling import frames

START = datetime(2026, 11, 2, 8, tzinfo=UTC)


class SumScore(nn.Module):
    """Score = the window's value: a model whose ranking the test controls."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=1, keepdim=True)


def _edge(tmp_path, false_alarms: int):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0, 1, 100), np.linspace(1.05, 1.9, false_alarms),
                             [3.0, 3.5]])
    times = [START + timedelta(minutes=10 * i) for i in range(values.size)]
    features = pl.DataFrame({"machine_id": "weld-01", "machine_type": "welder",
                             "window_start": times, "current__mean": values}).with_columns(
        pl.col("window_start").dt.cast_time_unit("us"))
    lake = Lake(str(tmp_path / "lake"))
    rows, verdicts = [], []
    for i in range(100, values.size):  # every flag (score > 1.0) was judged at the line
        sid = f"weld-01/{int(times[i].timestamp() * 1000)}"
        rows.append({"edge_id": "edge-weld1", "source_id": sid, "score": float(values[i]),
                     "threshold": 1.0, "ts": times[i], "value": "anomaly"})
        verdicts.append({"edge_id": "edge-weld1", "source_id": sid,
                         "verdict": "confirm" if values[i] >= 3 else "reject"})
    lake.append(table("silver.edge_predictions"), frames.predictions(rows))
    lake.append(table("silver.labels"), frames.labels(verdicts))
    model = export_onnx(SumScore(), np.zeros((1, 1), np.float32), tmp_path / "m.onnx")
    pre = window_preprocessing(WindowSpec("welder", 600.0, ("current__mean",), 1))
    return recalibrate_from_verdicts(lake, "edge-weld1", "sensor_anomaly", features, model,
                                     pre, {"value": 1.0})


def test_rejected_flags_raise_the_threshold_without_losing_a_confirmed_fault(tmp_path):
    result = _edge(tmp_path, false_alarms=50)
    assert (result.n_normal, result.n_fault) == (50, 2)
    assert result.changed and 1.9 < result.threshold < 3.0
    assert (result.false_alarms_before, result.false_alarms_after) == (50, 0)
    assert result.recall_before == result.recall_after == 1.0


def test_too_few_verdicts_keep_the_calibrated_threshold_and_say_why(tmp_path):
    result = _edge(tmp_path, false_alarms=5)
    assert not result.changed and result.threshold == pytest.approx(1.0)
    assert "need" in result.reason
