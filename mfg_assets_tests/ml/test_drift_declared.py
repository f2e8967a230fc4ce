"""What a drift evaluation declared is stored with it: the retrain's gate and the loop's
watch read the declared segments, not every segment that drifted once (the loop reported an
untouched machine in an open fault as declared, and its retrain was gated there)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.ml.drift import DRIFT_COLUMNS, Window, declared_rows, latest_drift, verdict

T0 = datetime(2026, 12, 7, 10, tzinfo=UTC)


def _features() -> pl.DataFrame:
    rows = [  # weld-02 persisted; cnc-02 drifted this time only (or was in an open fault)
        ("input", "current__rms", "weld-02", True), ("input", "current__std", "weld-02", False),
        ("input", "vibration__mean", "cnc-02", True), ("input", "power__max", "press-01", False),
    ]
    return pl.DataFrame(
        [{"kind": k, "feature": f, "segment": s, "n_reference": 100, "n_recent": 100,
          "psi": 5.0 if d else 0.01, "ks_stat": 0.5, "ks_pvalue": 0.0, "wasserstein": 1.0,
          "mean_reference": 1.0, "mean_recent": 2.0, "drifted": d} for k, f, s, d in rows],
        schema=DRIFT_COLUMNS)


def _stored(report) -> pl.DataFrame:
    spec = table("monitoring.drift")
    return report.features.with_columns(
        pl.lit(T0).cast(pl.Datetime("us", "UTC")).alias("computed_at"),
        pl.lit(report.family).alias("family"),
        *(pl.lit(None, pl.Datetime("us", "UTC")).alias(c) for c in
          ("reference_start", "reference_end", "recent_start", "recent_end")),
        pl.lit("test").alias("reference_source"), pl.lit(report.drifted).alias("family_drifted"),
        pl.lit(report.reason).alias("reason"), pl.lit("e1").alias("evidence_id"),
        declared_rows(report)).select(list(spec.polars_schema))


def test_only_the_persisted_segment_is_declared_and_gated(tmp_path):
    report = verdict("sensor_anomaly", _features(), Window(T0, T0), Window(T0, T0),
                     declared={"weld-02"})
    assert report.drifted and report.declared_segments == ("weld-02",)
    rows = _stored(report)
    declared = rows.filter(pl.col("declared"))
    assert declared.select("segment", "feature").rows() == [("weld-02", "current__rms")]
    # the raw verdict of the evaluation is kept: cnc-02 drifted this time
    assert rows.filter(pl.col("drifted"))["segment"].to_list() == ["weld-02", "cnc-02"]
    lake = Lake(str(tmp_path / "lake"), {})
    lake.append(table("monitoring.drift"), rows)
    latest = latest_drift(lake)
    assert latest["segments"].to_list() == [["weld-02"]]


def test_without_persistence_every_drifted_input_counts_and_nothing_when_not_drifted():
    pooled = verdict("sensor_anomaly", _features(), Window(T0, T0), Window(T0, T0))
    assert pooled.drifted
    assert _stored(pooled).filter(pl.col("declared"))["segment"].to_list() == [
        "weld-02", "cnc-02"]
    waiting = verdict("sensor_anomaly", _features(), Window(T0, T0), Window(T0, T0),
                      declared=set())
    assert not waiting.drifted and "not yet" in waiting.reason
    assert not _stored(waiting)["declared"].any()
