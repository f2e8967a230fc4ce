"""Like-for-like references, BH + effect size, and persistence keep the calendar out of drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from mfg_assets.ml.drift import feature_drift
from mfg_assets.ml.drift_reference import (
    WHOLE,
    Decision,
    day_to_day,
    decide,
    like_for_like,
    persistent,
)
from mfg_assets.plant_calendar import PlantCalendar

CAL = PlantCalendar()  # UTC-5, shifts 06/14/22, Mon-Fri, weekend pace 0.75
MACHINES = ("weld-01", "weld-02", "weld-03")


def _plant(start: datetime, hours: int, seed: int, shifted: dict[str, float] | None = None,
           shift_from: datetime | None = None) -> pl.DataFrame:
    """Per-minute sensor statistics whose level follows the calendar's pace (load), with
    an optional step on some machines from ``shift_from``."""
    rng = np.random.default_rng(seed)
    ts = [start + timedelta(minutes=m) for m in range(hours * 60)]
    ts_ms = np.array([int(t.timestamp() * 1000) for t in ts], dtype=np.int64)
    pace = CAL.pace(ts_ms)
    rows = []
    for machine in MACHINES:
        current = 150 + 60 * pace + rng.normal(0, 3, len(ts))
        temp = 40 + 25 * pace + rng.normal(0, 1.5, len(ts))
        if shifted and machine in shifted and shift_from is not None:
            late = np.array([t >= shift_from for t in ts])
            current = np.where(late, current * shifted[machine], current)
        rows.append(pl.DataFrame({"window_start": ts, "machine_id": machine,
                                  "current__mean": current, "temp__mean": temp}))
    return pl.concat(rows).with_columns(pl.col("window_start").dt.cast_time_unit("us"))


MONDAY_LOCAL_0 = datetime(2026, 11, 2, 5, tzinfo=UTC)  # Monday 00:00 at UTC-5
REFERENCE_START = MONDAY_LOCAL_0 - timedelta(days=7)
RECENT_START = MONDAY_LOCAL_0 + timedelta(hours=6)  # Monday early shift


def _windows(shifted=None):
    history = _plant(REFERENCE_START, 7 * 24, seed=1)
    live = _plant(RECENT_START, 6, seed=2, shifted=shifted, shift_from=RECENT_START)
    return history, live


def _drift(ref, rec) -> pl.DataFrame:
    return decide(feature_drift(ref, rec, ["current__mean", "temp__mean"], "machine_id"))


def test_a_monday_is_not_drift_against_a_like_for_like_reference() -> None:
    history, live = _windows()
    weekend = history.filter(pl.col("window_start") >= MONDAY_LOCAL_0 - timedelta(days=2))
    # the old comparison: the weekend before against the Monday early shift
    pooled = _drift(weekend, live)
    assert pooled["drifted"].sum() >= 3, "the calendar alone looks like drift when pooled"
    matched = like_for_like(history, live, "window_start", CAL, segment="machine_id")
    assert matched.level == "same day type, shift and hour band"
    assert _drift(matched.reference, matched.recent)["drifted"].sum() == 0


def test_real_drift_on_one_machine_is_found_on_that_machine_only() -> None:
    history, live = _windows(shifted={"weld-02": 1.3})
    matched = like_for_like(history, live, "window_start", CAL, segment="machine_id")
    drifted = _drift(matched.reference, matched.recent).filter(pl.col("drifted"))
    assert set(drifted["segment"]) == {"weld-02"}
    assert set(drifted["feature"]) == {"current__mean"}


def test_no_matching_context_falls_back_to_the_whole_window_and_says_so() -> None:
    history, live = _windows()
    nights = history.filter(pl.col("window_start").dt.hour().is_between(3, 10))  # 22-05 local
    matched = like_for_like(nights, live, "window_start", CAL, segment="machine_id")
    assert matched.level == WHOLE
    assert matched.reference.height == nights.height


def test_planned_stops_are_left_out_of_both_windows() -> None:
    stop = {"start": RECENT_START.isoformat(), "end": (RECENT_START + timedelta(hours=1))
            .isoformat(), "reason": "weld line maintenance"}
    cal = PlantCalendar.from_dict({"planned_stops": [stop]})
    history, live = _windows()
    matched = like_for_like(history, live, "window_start", cal, segment="machine_id")
    assert matched.stopped_rows == 60 * len(MACHINES)
    assert matched.recent.height == live.height - 60 * len(MACHINES)


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_pure_noise_never_drifts_however_many_features(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_features = 60
    data = {f"f{i}": rng.normal(0, 1, 4000) for i in range(n_features)}
    frame = pl.DataFrame(data)
    result = decide(feature_drift(frame[:3000], frame[3000:], list(data)))
    assert result["drifted"].sum() == 0


def test_a_tiny_but_significant_shift_is_not_drift() -> None:
    rng = np.random.default_rng(3)
    ref = pl.DataFrame({"x": rng.normal(0, 1, 200_000)})
    rec = pl.DataFrame({"x": rng.normal(0.05, 1, 200_000)})  # p ~ 0, effect 0.05 std
    raw = feature_drift(ref, rec, ["x"])
    assert raw["ks_pvalue"][0] < 1e-10
    assert not decide(raw, Decision())["drifted"][0]


def test_persistence_needs_consecutive_evaluations() -> None:
    assert persistent([], {"weld-02"}, 2) == set()
    assert persistent([{"weld-02"}], {"weld-02"}, 2) == {"weld-02"}
    assert persistent([{"weld-02"}, set()], {"weld-02"}, 2) == set()
    assert persistent([{"a", "b"}, {"a", "b"}], {"a"}, 3) == {"a"}
    assert persistent([], {"a"}, 1) == {"a"}


def _with_daily_weather(frame: pl.DataFrame, sd: float, seed: int) -> pl.DataFrame:
    """Every day its own temperature offset (weather), shared by all machines."""
    days = frame["window_start"].dt.date()
    unique = days.unique().sort()
    offsets = dict(zip(unique.to_list(),
                       np.random.default_rng(seed).normal(0, sd, unique.len()), strict=True))
    return frame.with_columns(pl.col("temp__mean") + pl.Series([offsets[d] for d in days]))


def test_a_shift_within_the_plants_own_day_to_day_variation_is_not_drift() -> None:
    history = _with_daily_weather(_plant(REFERENCE_START, 7 * 24, seed=1), 2.0, seed=5)
    live = _plant(RECENT_START, 6, seed=2).with_columns(pl.col("temp__mean") + 2.5)  # warm day
    matched = like_for_like(history, live, "window_start", CAL, segment="machine_id")
    raw = feature_drift(matched.reference, matched.recent, ["current__mean", "temp__mean"],
                        "machine_id")
    assert decide(raw)["drifted"].sum() == 3, "a warm day passes KS, PSI and Wasserstein"
    days = day_to_day(history, matched, ["current__mean", "temp__mean"], "window_start", CAL,
                      "machine_id")
    assert days["n_days"].min() == 7
    assert decide(raw, days=days)["drifted"].sum() == 0
    # ...but a step far beyond the day-to-day spread still is
    hot = live.with_columns(pl.col("temp__mean") + 15.0)
    matched = like_for_like(history, hot, "window_start", CAL, segment="machine_id")
    raw = feature_drift(matched.reference, matched.recent, ["temp__mean"], "machine_id")
    days = day_to_day(history, matched, ["temp__mean"], "window_start", CAL, "machine_id")
    assert decide(raw, days=days)["drifted"].sum() == 3


def test_a_spread_from_few_days_needs_a_larger_shift() -> None:
    """Student-t cut: 10 day-to-day spreads is drift over 20 degrees of freedom, not over 2."""
    rng = np.random.default_rng(4)
    ref = pl.DataFrame({"x": rng.normal(0, 1, 2000), "segment": "m1"})
    rec = pl.DataFrame({"x": rng.normal(2, 1, 300), "segment": "m1"})
    raw = feature_drift(ref, rec, ["x"], "segment")
    for dof, drifted in ((2, False), (20, True)):
        days = pl.DataFrame({"segment": ["m1"], "feature": ["x"], "day_z": [10.0],
                             "n_days": [dof + 2], "dof": [dof]})
        assert decide(raw, days=days)["drifted"][0] is drifted
