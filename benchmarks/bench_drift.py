"""False drift on a plant that follows its calendar, and detection delay of real drift.

    python benchmarks/bench_drift.py [--quick]

Replay-driven and in memory (simulator -> contract router -> silver typers -> the same
sensor-window features the assets build), so it is fast and repeatable:

- Control: a welding line with NO drift and no faults, from a Saturday through a full
  second week (weekend -> weekdays -> weekend), three shifts, one planned stop on the
  second Wednesday. Every 6 h of the second week, the last 6 h are compared with the week
  before them, twice: the old way (whole reference window; PSI and Bonferroni-KS per
  feature) and the calendar way (like-for-like reference of the same day type, shift and
  hour band; Benjamini-Hochberg with minimum effect sizes; declared after 2 consecutive
  drifted evaluations). Figures: drift declarations per simulated week, and segments
  (machines) declared, for each way.
- Detection: the same plant with ``sensor_replacement`` (weld-02's current sensor reads
  1.6x) switched on in the second week; evaluated every hour; the delay from onset to the
  first declaration on weld-02 (and whether an untouched welder was declared).

Prints one line per figure and writes them to data/bench/bench_drift.json.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import polars as pl
from _report import report
from bench_train import simulate_silver

from mfg_assets.ml import drift as dm
from mfg_assets.ml import features
from mfg_assets.ml.drift_reference import Decision, day_to_day, decide, like_for_like, persistent
from mfg_assets.plant_calendar import PlantCalendar
from mfg_assets.sim import SimConfig

SATURDAY_LOCAL_0 = datetime(2026, 10, 31, 5, tzinfo=UTC)  # Saturday 00:00 at UTC-5
TS = "window_start"
SEGMENT = "machine_id"


def plant(days: int, drift_at_h: float | None, calendar: PlantCalendar) -> pl.DataFrame:
    config = SimConfig(
        seed=11, start=SATURDAY_LOCAL_0, duration_h=24 * days, sources=("welding",),
        fault_rate_per_day=0.0, sensor_period_s=30.0, calendar=calendar,
        drift=(("sensor_replacement", drift_at_h),) if drift_at_h is not None else (),
    )
    silver = simulate_silver(config)
    return features.sensor_windows(silver["silver.sensor_readings"],
                                   silver["silver.fault_labels"])


def evaluate(windows: pl.DataFrame, at: datetime, calendar: PlantCalendar,
             recent: timedelta, reference: timedelta) -> tuple[set[str], set[str]]:
    """(segments drifted the old way, segments drifted the calendar way) at time ``at``."""
    columns = features.feature_columns(windows)
    ref = windows.filter(pl.col(TS) >= at - recent - reference, pl.col(TS) < at - recent)
    rec = windows.filter(pl.col(TS) >= at - recent, pl.col(TS) < at)
    old = dm.feature_drift(ref, rec, columns, SEGMENT)
    matched = like_for_like(ref, rec, TS, calendar, segment=SEGMENT)
    days = day_to_day(ref, matched, columns, TS, calendar, SEGMENT)
    new = decide(dm.feature_drift(matched.reference, matched.recent, columns, SEGMENT),
                 days=days)
    return (set(old.filter(pl.col("drifted"))["segment"]),
            set(new.filter(pl.col("drifted"))["segment"]))


def control(days: int, step_h: int, calendar: PlantCalendar) -> dict[str, float]:
    windows = plant(days, None, calendar)
    recent, reference = timedelta(hours=6), timedelta(days=7)
    start = SATURDAY_LOCAL_0 + timedelta(days=7, hours=6)
    end = SATURDAY_LOCAL_0 + timedelta(days=days)
    old_declared, new_declared, evaluations = 0, 0, 0
    old_segments: set[str] = set()
    new_segments: set[str] = set()
    history: list[set[str]] = []
    at = start
    while at <= end:
        old, new = evaluate(windows, at, calendar, recent, reference)
        declared = persistent(history, new, Decision().persistence)
        history.append(new)
        evaluations += 1
        old_declared += bool(old)
        new_declared += bool(declared)
        old_segments |= old
        new_segments |= declared
        at += timedelta(hours=step_h)
    weeks = (end - start).total_seconds() / (7 * 86400)
    return {
        "control_evaluations": evaluations,
        "control_declarations_per_week_pooled": old_declared / weeks,
        "control_declarations_per_week_calendar": new_declared / weeks,
        "control_segments_declared_pooled": len(old_segments),
        "control_segments_declared_calendar": len(new_segments),
    }


def detection(days: int, onset_h: float, calendar: PlantCalendar) -> dict[str, float]:
    windows = plant(days, onset_h, calendar)
    onset = SATURDAY_LOCAL_0 + timedelta(hours=onset_h)
    recent, reference = timedelta(hours=6), timedelta(days=7)
    history: list[set[str]] = []
    at, delay, false_segments = onset + timedelta(hours=1), float("nan"), set()
    while at <= SATURDAY_LOCAL_0 + timedelta(days=days):
        _, new = evaluate(windows, at, calendar, recent, reference)
        declared = persistent(history, new, Decision().persistence)
        history.append(new)
        false_segments |= declared - {"weld-02"}
        if "weld-02" in declared:
            delay = (at - onset).total_seconds() / 3600
            break
        at += timedelta(hours=1)
    return {"sensor_replacement_detection_delay_h": delay,
            "sensor_replacement_untouched_declared": len(false_segments)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 days instead of 15")
    args = parser.parse_args()
    days = 10 if args.quick else 15
    # one planned stop: the second Wednesday's early shift (11:00-19:00 UTC = 06-14 local)
    wednesday = SATURDAY_LOCAL_0 + timedelta(days=11)
    stop = {"start": (wednesday + timedelta(hours=6)).isoformat(),
            "end": (wednesday + timedelta(hours=14)).isoformat(), "reason": "weld line PM"}
    calendar = PlantCalendar.from_dict({"planned_stops": [stop]})
    started = time.perf_counter()
    figures = control(days, 6, calendar)
    figures |= detection(days, 24 * 9 + 9.5, PlantCalendar())  # the 2nd Monday, 09:30 local
    figures["seconds"] = time.perf_counter() - started
    report("bench_drift", figures)


if __name__ == "__main__":
    main()
