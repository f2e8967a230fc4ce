"""Honest splits: hour blocks only on a real time axis; else a seeded, grouped split."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfg_assets.ml.base import (
    SplitPlan,
    SplitRefused,
    block_split,
    check_split,
    plan_split,
    split_folds,
    split_parts,
    split_summary,
    time_axis,
)

T0 = datetime(2026, 1, 1, 8, tzinfo=UTC)


def table(n: int, ts: list[datetime], defect_share: float = 0.3) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({"unit_id": [f"u{i}" for i in range(n)], "ts": ts,
                         "label": np.where(rng.random(n) < defect_share, "bad", "ok")})


def test_one_run_per_day_is_not_a_time_axis():
    """The plant's table: one run a day at 08:00. Hour blocks put every row in train."""
    days = table(180, [T0 + timedelta(days=d) for d in range(180)])
    old = days.select(block_split(pl.col("ts")).alias("s"))["s"].unique().to_list()
    assert old == ["train"]  # what the old split did: every metric NaN
    ok, why = time_axis(days, "ts")
    assert not ok and "daily series" in why
    plan = plan_split(days, ts="ts", label="label", key="unit_id")
    assert plan.method == "cross_validation" and "180 rows" in plan.reason
    assert "grouped by row" in plan.reason  # not by hour blocks
    folds = split_folds(days, plan)
    assert sorted(np.unique(folds)) == list(range(5))


@pytest.mark.parametrize("hour", range(24))
def test_one_run_a_day_at_any_hour_is_a_daily_series(hour):
    days = table(400, [T0.replace(hour=hour) + timedelta(days=d) for d in range(400)])
    ok, why = time_axis(days, "ts")
    assert not ok and "daily series" in why


def test_file_times_of_one_export_are_not_a_time_axis():
    """Images imported without a time column: file modification times, minutes apart."""
    n = 3000
    export = table(n, [T0 + timedelta(seconds=i // 10) for i in range(n)])
    ok, _ = time_axis(export, "ts")
    assert not ok
    plan = plan_split(export, ts="ts", label="label", key="unit_id")
    assert plan.method == "stratified"
    parts = export.with_columns(split_parts(export, plan).alias("p"))
    share = parts.group_by("p").agg((pl.col("label") == "bad").mean().alias("bad"))
    # each part holds about the table's 30 % defects (not 10 % in the "last 15 %")
    assert all(abs(v - 0.3) < 0.06 for v in share["bad"])
    assert parts["p"].value_counts().sort("p")["count"].to_list()[1] > 0.6 * n


def test_a_plant_clock_is_a_time_axis():
    n = 24 * 60
    minutes = table(n, [T0 + timedelta(minutes=i) for i in range(n)])
    assert time_axis(minutes, "ts")[0]
    assert plan_split(minutes, ts="ts", label="label").method == "time_blocks"
    assert not time_axis(minutes.drop("ts"), "ts")[0]


def test_groups_stay_on_one_side():
    n = 2400
    rows = table(n, [T0] * n).with_columns((pl.int_range(n) // 4).cast(pl.String).alias("module"))
    plan = plan_split(rows, ts="ts", label="label", group="module")
    parts = rows.with_columns(split_parts(rows, plan).alias("p"))
    assert parts.group_by("module").agg(pl.col("p").n_unique())["p"].max() == 1


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(0, 1999), min_size=5, max_size=300))
def test_a_units_part_does_not_depend_on_the_other_rows(seed, keep):
    """A champion scored on the last hours (a subset) sees the challenger's parts."""
    rows = table(2000, [T0] * 2000)
    plan = SplitPlan("stratified", "test", seed=seed, label="label", key="unit_id")
    whole = rows.with_columns(split_parts(rows, plan).alias("p"))
    subset = whole[sorted(set(keep))]
    again = split_parts(subset.drop("p"), plan)
    assert again.to_list() == subset["p"].to_list()


def test_a_part_without_a_class_is_refused_with_what_to_add():
    parts = {"train": pl.DataFrame({"label": ["ok", "bad"]}),
             "validation": pl.DataFrame({"label": ["ok"]}),
             "test": pl.DataFrame({"label": ["ok", "bad"]})}
    summary = split_summary(parts, "label")
    assert summary["validation"] == {"rows": 1, "classes": {"ok": 1}}
    with pytest.raises(SplitRefused, match="label=bad is absent from the validation part.*add"):
        check_split(summary, "label", ["bad", "ok"])
    notes = check_split(summary, "label", ["bad", "ok"], require_classes=False)
    assert notes and "validation" in notes[0]
    empty = {**parts, "test": pl.DataFrame({"label": []}, schema={"label": pl.String})}
    with pytest.raises(SplitRefused, match="test part is empty: add rows"):
        check_split(split_summary(empty, "label"), "label", ["bad", "ok"])
