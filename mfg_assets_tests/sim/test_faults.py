"""Injected faults stand clearly out of normal operation in the emitted data."""

from __future__ import annotations

import numpy as np
import pytest

from mfg_assets.sim import SimConfig, ground_truth, iter_messages
from mfg_assets.sim.press import DOWN_KW

from .helpers import sensor_series

HOUR = 3_600_000
# A fault-heavy plant over two days so several press failures and welder faults happen.
CONFIG = SimConfig(
    seed=21,
    duration_h=48.0,
    sensor_period_s=30.0,
    fault_rate_per_day=2.0,
    sources=("welding", "press"),
)


@pytest.fixture(scope="module")
def series() -> dict[str, dict[str, np.ndarray]]:
    return sensor_series(iter_messages(CONFIG))


@pytest.fixture(scope="module")
def truth() -> list[dict]:
    return [r for r in ground_truth(CONFIG) if r["kind"] == "fault"]


def _normal_mask(ts: np.ndarray, machine: str, truth: list[dict]) -> np.ndarray:
    """Samples with no fault of this machine under way (onset..end)."""
    mask = np.ones(len(ts), dtype=bool)
    for r in truth:
        if r["machine_id"] == machine:
            mask &= ~((ts >= r["onset_ms"]) & (ts < r["end_ms"]))
    return mask


def test_ground_truth_records_are_complete_and_ordered(truth: list[dict]) -> None:
    assert truth, "the fault-heavy config should inject faults"
    for r in truth:
        assert set(r) >= {
            "kind",
            "fault_id",
            "machine_id",
            "fault_type",
            "onset_ms",
            "failure_ms",
            "end_ms",
        }
        assert CONFIG.start_ms <= r["onset_ms"] < r["end_ms"] <= CONFIG.end_ms
        if r["failure_ms"] is not None:
            assert r["onset_ms"] < r["failure_ms"] < r["end_ms"]
    onsets = [r["onset_ms"] for r in truth]
    assert onsets == sorted(onsets)
    assert len({r["fault_id"] for r in truth}) == len(truth)


def test_press_degradation_is_far_above_normal_before_failure(
    series: dict, truth: list[dict]
) -> None:
    failures = [
        r for r in truth if r["failure_ms"] is not None and r["failure_ms"] - r["onset_ms"] > HOUR
    ]
    assert len(failures) >= 3
    for r in failures:
        s = series[r["machine_id"]]
        ts = s["ts"]
        normal = _normal_mask(ts, r["machine_id"], truth)
        last_hour = (ts >= r["failure_ms"] - HOUR) & (ts < r["failure_ms"])
        # Compare like with like: the machine running (power above idle) in both windows.
        running = s["power_kw"] > np.percentile(s["power_kw"][normal], 25)
        base_vib = np.median(s["vibration_rms"][normal & running])
        base_temp = np.median(s["spindle_temp"][normal & running])
        vib = np.median(s["vibration_rms"][last_hour & running])
        temp = np.median(s["spindle_temp"][last_hour & running])
        if r["fault_type"] == "bearing_wear":
            assert vib > 3.0 * base_vib, r
        else:  # lubrication_loss: the spindle runs hot, vibration rises less
            assert temp > base_temp + 12.0, r
            assert vib > 1.5 * base_vib, r
        # After the failure the machine stands still under repair.
        repair = (ts >= r["failure_ms"] + 60_000) & (ts < r["end_ms"])
        if repair.any():
            assert np.all(s["power_kw"][repair] < 2 * DOWN_KW)
            assert np.all(s["vibration_rms"][repair] < 0.3)


def test_welder_faults_break_the_normal_sensor_relations(series: dict, truth: list[dict]) -> None:
    kinds = set()
    for r in truth:
        if r["fault_type"] not in ("wire_feed_slip", "contact_tip_wear"):
            continue
        s = series[r["machine_id"]]
        ts = s["ts"]
        welding = s["current"] > 60.0  # arc duty high enough for stable ratios
        normal = _normal_mask(ts, r["machine_id"], truth) & welding
        window = (ts >= r["onset_ms"]) & (ts < r["end_ms"]) & welding
        if window.sum() < 20:
            continue  # the fault fell on a break: nothing welded, nothing to see
        if r["fault_type"] == "wire_feed_slip":
            # Normally feed tracks current tightly; slipping makes the ratio erratic.
            feed_ratio = s["wire_feed"] / np.where(welding, s["current"], 1.0)
            assert np.std(feed_ratio[window]) > 4 * np.std(feed_ratio[normal]), r
        else:
            # Normally voltage is a linear function of current; a worn tip lifts it off.
            fit = np.polyfit(s["current"][normal], s["voltage"][normal], 1)
            residual = s["voltage"] - np.polyval(fit, s["current"])
            late = window & (ts >= r["onset_ms"] + 0.75 * (r["end_ms"] - r["onset_ms"]))
            lift = np.median(residual[late])
            assert lift > 4 * np.std(residual[normal]), r
        kinds.add(r["fault_type"])
    assert kinds == {"wire_feed_slip", "contact_tip_wear"}


def test_a_healthy_plant_has_no_faults() -> None:
    healthy = SimConfig(duration_h=24.0, fault_rate_per_day=0.0, sources=("press",))
    assert [r for r in ground_truth(healthy) if r["kind"] == "fault"] == []
