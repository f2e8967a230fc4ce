"""Drift metrics on synthetic data, and the simulator's drift scenarios caught after onset."""

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from mfg_assets.ml import drift, families, features
from mfg_assets.sim import SimConfig
from mfg_assets_tests.ml.simdata import simulate_silver


def test_metrics_small_without_drift_and_large_with_a_shift():
    rng = np.random.default_rng(0)
    ref, same, shifted = rng.normal(0, 1, 2000), rng.normal(0, 1, 2000), rng.normal(1, 1, 2000)
    assert drift.psi(ref, same) < 0.05
    assert drift.psi(ref, shifted) > 0.5
    assert drift.ks(ref, same)[1] > 0.01 and drift.ks(ref, shifted)[1] < 1e-10
    assert drift.wasserstein(ref, same) < 0.1
    assert drift.wasserstein(ref, shifted) == pytest.approx(1.0, abs=0.1)  # in reference stds


def test_verdict_names_the_drifted_feature_and_evidence_is_stable():
    rng = np.random.default_rng(1)
    ref = pl.DataFrame({"a": rng.normal(0, 1, 500), "b": rng.normal(0, 1, 500)})
    rec = pl.DataFrame({"a": rng.normal(0, 1, 500), "b": rng.normal(2, 1, 500)})
    table = drift.feature_drift(ref, rec, ["a", "b"])
    assert table.filter(pl.col("drifted")).get_column("feature").to_list() == ["b"]
    window = drift.Window(None, None, 500)
    report = drift.verdict("x", table, window, window)
    assert report.drifted and "b (PSI" in report.reason
    assert report.evidence_id == drift.verdict("x", table, window, window).evidence_id
    strict = drift.DriftThresholds(any_feature=False, share=0.9)  # 1 of 2 is not enough
    assert not drift.verdict("x", table, window, window, strict).drifted


def _before_after(frame: pl.DataFrame, family: str, onset_h: float, ref_h: float,
                  recent_h: float) -> tuple[drift.DriftReport, drift.DriftReport]:
    ts = families.spec(family).drift.ts
    t0 = frame.get_column(ts).min()
    before = frame.filter(pl.col(ts) < t0 + timedelta(hours=onset_h))
    kw = dict(recent=timedelta(hours=recent_h), reference_span=timedelta(hours=ref_h))
    return drift.family_drift(family, before, **kw), drift.family_drift(family, frame, **kw)


@pytest.mark.slow
def test_camera_lighting_caught_on_image_statistics_after_onset_only():
    config = SimConfig(seed=3, duration_h=6, sources=("images",), image_period_s=30,
                       drift=[("camera_lighting", 4.0)])
    images = features.image_dataset(simulate_silver(config)["silver.inspection_images"])
    before, after = _before_after(images, "vision_defect", 4.0, 2.0, 2.0)
    assert not before.drifted, before.reason
    assert after.drifted
    flagged = after.features.filter(pl.col("drifted"))
    assert set(flagged.get_column("segment")) == {"cam-01"}  # the lit camera only
    assert "cam-01:img_brightness" in after.reason


def test_material_lot_caught_on_process_units_after_onset_only():
    config = SimConfig(seed=3, duration_h=6, sources=("process",),
                       drift=[("material_lot", 4.0)])
    silver = simulate_silver(config)
    units = features.process_units(silver["silver.process_runs"],
                                   silver["silver.process_parameters"])
    before, after = _before_after(units, "process_yield", 4.0, 2.0, 2.0)
    assert not before.drifted, before.reason
    assert after.drifted and "yield_pct" in after.reason


@pytest.mark.slow
def test_sensor_recalibration_caught_on_sensor_windows_of_its_targets():
    # Within one short run the shift rhythm and the machines' thermal drift move many
    # sensor statistics, so the reference is the same hours of the same plant without the
    # recalibration (what a model trained on a full day of normal operation has seen).
    base = dict(seed=3, duration_h=6, sensor_period_s=20, sources=("welding", "press"),
                fault_rate_per_day=0)
    onset = 2.0
    plain = simulate_silver(SimConfig(**base))
    drifted = simulate_silver(SimConfig(**base, drift=[("sensor_recalibration", onset)]))

    def windows(silver):
        return features.sensor_windows(silver["silver.sensor_readings"], every="5m")

    a, b = windows(plain), windows(drifted)
    t0 = a.get_column("window_start").min() + timedelta(hours=onset)
    columns = features.feature_columns(a)

    def compare(when):
        table = drift.feature_drift(a.filter(when), b.filter(when), columns, "machine_id")
        window = drift.Window(None, None, 0)
        return drift.verdict("sensor_anomaly", table, window, window)

    before = compare(pl.col("window_start") < t0)
    after = compare(pl.col("window_start") >= t0 + timedelta(minutes=10))
    assert not before.drifted, before.reason
    assert after.drifted
    flagged = set(after.features.filter(pl.col("drifted")).select(
        pl.concat_str("segment", pl.lit(":"), "feature")).to_series())
    assert {"weld-02:current__mean", "cnc-01:spindle_temp__mean"} <= flagged
    assert {f.split(":")[0] for f in flagged} == {"weld-02", "cnc-01"}


def test_error_drift_flags_a_regressor_whose_errors_rose_only():
    rng = np.random.default_rng(2)

    def units(offset: float, n: int = 400) -> pl.DataFrame:
        x = rng.uniform(0, 10, n)
        return pl.DataFrame({"x": x, "y": 2 * x + offset + rng.normal(0, 0.5, n)})

    scorer = drift.Scorer(predict=lambda f: 2 * f.get_column("x").to_numpy(), target="y")
    same = drift.error_drift(units(0.0), units(0.0), scorer)
    shifted = drift.error_drift(units(0.0), units(3.0), scorer)
    assert not same.get_column("drifted").item()
    (row,) = shifted.to_dicts()
    assert row["drifted"] and row["kind"] == "performance" and row["feature"] == "abs_error:y"
    assert row["mean_reference"] == pytest.approx(0.4, abs=0.1)  # MAE of N(0, 0.5) noise
    assert row["mean_recent"] == pytest.approx(3.0, abs=0.2)
    window = drift.Window(None, None, 400)
    report = drift.verdict("process_yield", shifted, window, window)
    assert report.drifted and "abs_error:y" in report.reason


def test_material_lot_raises_the_yield_champions_error():
    from mfg_assets.ml import yield_model

    config = SimConfig(seed=3, duration_h=8, sources=("process",),
                       drift=[("material_lot", 5.0)])
    silver = simulate_silver(config)
    units = features.process_units(silver["silver.process_runs"],
                                   silver["silver.process_parameters"])
    t0 = units.get_column("ts").min()
    before = units.filter(pl.col("ts") < t0 + timedelta(hours=5))
    trained = yield_model.train(before, {"max_iter": 100, "importance_repeats": 1})
    scorer = drift.Scorer(predict=trained.model.predict, target="yield_pct",
                          unseen=lambda f: yield_model.unseen_rows(f, trained.info))
    span = (before.get_column("ts").min(), before.get_column("ts").max())
    kw = dict(recent=timedelta(hours=2), reference=span, scorer=scorer)
    quiet = drift.family_drift("process_yield", before, **{**kw, "reference": None,
                               "reference_span": timedelta(hours=3)})
    after = drift.family_drift("process_yield", units, **kw)
    errors = after.features.filter(pl.col("feature") == "abs_error:yield_pct").to_dicts()[0]
    assert errors["drifted"], errors
    assert errors["mean_recent"] > 1.5 * errors["mean_reference"]
    quiet_errors = quiet.features.filter(pl.col("feature") == "abs_error:yield_pct")
    assert not quiet_errors.get_column("drifted").item()
