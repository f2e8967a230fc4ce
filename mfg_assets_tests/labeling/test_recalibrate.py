"""Threshold recalibration from verdicts: fewer false alarms, no lost recall on labelled faults."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfg_assets.labeling.recalibrate import labelled_windows, recalibrate_threshold
from mfg_assets.ml.features import feature_columns, sensor_windows
from mfg_assets.sim import SimConfig
from mfg_assets_tests.labeling import frames
from mfg_assets_tests.ml.simdata import simulate_silver

EDGE = "edge-weld1"


def test_raises_between_false_alarms_and_the_lowest_caught_fault():
    normal = [0.1] * 30 + [0.55, 0.6, 0.62]  # three false alarms above 0.5
    fault = [0.7, 0.9, 0.4]  # 0.4: a fault the current threshold already misses
    result = recalibrate_threshold(normal + fault, [False] * 33 + [True] * 3, current=0.5)
    assert result.changed and result.threshold == pytest.approx((0.62 + 0.7) / 2)
    assert (result.false_alarms_before, result.false_alarms_after) == (3, 0)
    assert result.recall_after == result.recall_before == pytest.approx(2 / 3)


def test_stays_without_a_fault_to_bound_it_or_with_too_few_rejections():
    no_fault = recalibrate_threshold([0.1] * 30 + [0.6] * 5, [False] * 35, current=0.5)
    assert not no_fault.changed and "no labelled fault" in no_fault.reason
    few = recalibrate_threshold([0.6] * 3 + [0.9], [False] * 3 + [True], current=0.5)
    assert not few.changed and "need 20" in few.reason
    tangled = recalibrate_threshold([0.1] * 30 + [0.95], [False] * 30 + [True], current=0.5,
                                    min_normal=1)
    assert tangled.false_alarms_before == 0 and not tangled.changed


@settings(max_examples=200, deadline=None)
@given(
    normal=st.lists(st.floats(0, 10, allow_nan=False), min_size=20, max_size=80),
    fault=st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=20),
    current=st.floats(0, 10, allow_nan=False),
)
def test_never_loses_recall_never_adds_false_alarms(normal, fault, current):
    result = recalibrate_threshold(normal + fault, [False] * len(normal) + [True] * len(fault),
                                   current=current)
    assert result.threshold >= current
    assert result.recall_after == result.recall_before
    assert result.false_alarms_after <= result.false_alarms_before
    if result.changed:
        assert result.false_alarms_after < result.false_alarms_before


@pytest.fixture(scope="module")
def windows() -> pl.DataFrame:
    silver = simulate_silver(SimConfig(seed=6, duration_h=24, sources=("welding",),
                                       fault_rate_per_day=1.5))
    return sensor_windows(silver["silver.sensor_readings"], silver["silver.fault_labels"],
                          every="5m")


def _scores(windows: pl.DataFrame) -> np.ndarray:
    """A stand-in detector: largest |z| of the window's features against early normal windows."""
    x = windows.select(feature_columns(windows)).to_numpy().astype(float)
    start = windows.get_column("window_start")
    early = ((start - start.min()).dt.total_hours() < 8).to_numpy()
    fit = early & ~windows.get_column("is_fault").to_numpy().astype(bool)
    mu, sd = np.nanmean(x[fit], axis=0), np.nanstd(x[fit], axis=0) + 1e-9
    return np.nanmax(np.abs((x - mu) / sd), axis=1)


@pytest.mark.slow
def test_fifty_rejected_false_flags_cut_the_false_alarm_rate_without_losing_recall(windows):
    """Issue 15's target, on simulated sensor windows scored at one edge: the operators reject
    the first 50 false flags and confirm the flagged faults; the threshold recalibrated from
    those verdicts is applied to the same windows."""
    scores = _scores(windows)
    fault = windows.get_column("is_fault").to_numpy().astype(bool)
    current = float(np.quantile(scores[~fault], 0.85))  # an edge threshold that over-alarms
    source = [f"{m}/{int(s.timestamp() * 1000)}" for m, s in
              windows.select("machine_id", "window_start").iter_rows()]
    preds = frames.predictions([
        {"edge_id": EDGE, "source_id": sid, "score": float(sc), "threshold": current,
         "ts": ws} for sid, sc, ws in zip(source, scores, windows["window_start"], strict=True)])
    flagged = scores > current
    false_flags = [i for i in np.argsort(windows["window_start"].to_numpy()) if
                   flagged[i] and not fault[i]][:50]
    caught = [i for i in range(len(source)) if flagged[i] and fault[i]]
    assert len(false_flags) == 50 and caught
    verdicts = frames.labels(
        [{"edge_id": EDGE, "source_id": source[i], "verdict": "reject"} for i in false_flags]
        + [{"edge_id": EDGE, "source_id": source[i], "verdict": "confirm"} for i in caught])
    judged = labelled_windows(preds, verdicts, EDGE)
    assert judged.height == 50 + len(caught)
    result = recalibrate_threshold(judged["score"].to_numpy(), judged["truth"].to_numpy(),
                                   current)
    before_fa = float((scores[~fault] > current).mean())
    after_fa = float((scores[~fault] > result.threshold).mean())
    labelled_fault = scores[caught]
    print(f"\nrecalibration: threshold {current:.4f} -> {result.threshold:.4f}; false alarm "
          f"rate on all {int((~fault).sum())} normal windows {before_fa:.3f} -> {after_fa:.3f}"
          f"; labelled false alarms {result.false_alarms_before} -> "
          f"{result.false_alarms_after}; recall on {len(caught)} labelled faults "
          f"{result.recall_before:.2f} -> {result.recall_after:.2f}; recall on all "
          f"{int(fault.sum())} fault windows {(scores[fault] > current).mean():.2f} -> "
          f"{(scores[fault] > result.threshold).mean():.2f}")
    assert result.changed, result.reason
    assert after_fa < before_fa
    assert (labelled_fault > result.threshold).all()  # recall on labelled faults kept
