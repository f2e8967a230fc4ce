"""Edge health: log templates, point-in-time health features, and a model that sees a device
failure hours ahead on a simulated plant-like fleet (figures printed for the issue note).

The fleet is twelve edges over twelve days with about one device fault per edge every two
days: some seventy failures, a couple of dozen of them in the test blocks. Four edges over
six days (seven failures, 25 positive test windows) cannot judge a model: its validation
blocks held about two failure courses, and the best-F1 threshold there fell to 1e-5.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from mfg_assets.lake.registry import table
from mfg_assets.ml import drift, edge_health, families, features
from mfg_assets.ml.gate import gate_family, promotion_decision
from mfg_assets.sim import SimConfig
from mfg_assets.sim.device_faults import edge_fleet
from mfg_assets_tests.ml.simdata import simulate_silver

# Twelve days of twelve edges, heartbeats every 2 minutes, one device fault per edge-2-days.
EDGES = 12
FLEET = SimConfig(seed=1, duration_h=24 * 12, telemetry_period_s=120.0, sources=("telemetry",),
                  device_fault_rate_per_day=0.5, fault_rate_per_day=0.0, plant=edge_fleet(EDGES))


@pytest.fixture(scope="module")
def silver() -> dict[str, pl.DataFrame]:
    return simulate_silver(FLEET)


@pytest.fixture(scope="module")
def windows(silver) -> pl.DataFrame:
    return features.edge_telemetry(silver["silver.edge_telemetry"], silver["silver.fault_labels"])


@pytest.fixture(scope="module")
def trained(windows):
    return edge_health.train(windows, edge_health.DEFAULT_PARAMS, seed=0)


def test_log_templates_mask_the_variable_parts():
    lines = pl.DataFrame({"line": [
        "ERROR worker 0x1f3a9c00 crashed: segfault at 0x7f00deadbeef",
        "ERROR worker 0x00ab12cd crashed: segfault at 0x55aa00112233",
        "WARNING cpu throttled to 1200 MHz at 84.5 C",
        "WARNING cpu throttled to 800 MHz at 91.0 C",
        "WARNING runtime restart (worker crash)",
    ]})
    templates = lines.select(features.log_template(pl.col("line"))).to_series().to_list()
    assert templates[0] == templates[1] == "ERROR worker <HEX> crashed: segfault at <HEX>"
    assert templates[2] == templates[3] == "WARNING cpu throttled to <NUM> MHz at <NUM> C"
    assert templates[4] == "WARNING runtime restart (worker crash)"
    assert len({features.log_bucket(t) for t in templates}) == 3
    assert features.log_bucket(templates[0]) == features.log_bucket(templates[1])


def test_health_features_fit_the_schema_and_count_every_problem_line(silver, windows):
    raw = silver["silver.edge_telemetry"]
    table("features.edge_telemetry").schema.validate(windows)
    assert windows.get_column("heartbeats").sum() == raw.height
    lines = features.log_templates(raw)
    buckets = [f"log__t{b:02d}" for b in range(features.LOG_BUCKETS)]
    assert set(buckets) <= set(windows.columns)
    assert windows.select(pl.sum_horizontal(buckets).sum()).item() == lines.height
    # the columns a leak, a hot cabinet and a crash loop show in
    for column in ("mem__slope_3h", "temp__slope_1h", "restarts__sum_3h", "log__errors_1h"):
        assert windows.get_column(column).drop_nulls().len() > 0.9 * windows.height


def test_health_features_use_no_future_heartbeat(silver, windows):
    raw = silver["silver.edge_telemetry"]
    cut = raw.get_column("ts").min() + timedelta(hours=60)
    past = features.edge_telemetry(raw.filter(pl.col("ts") < cut))
    drop = ["hours_to_failure", "failed"]
    expected = windows.filter(pl.col("window_end") <= cut).drop(drop)
    got = past.filter(pl.col("window_end") <= cut).drop(drop)
    assert got.height == expected.height > 0
    assert got.equals(expected.select(got.columns))


def test_time_to_failure_comes_from_the_ground_truth(silver, windows):
    labels = silver["silver.fault_labels"].filter(pl.col("failure").is_not_null())
    fault = labels.row(0, named=True)
    edge = windows.filter(pl.col("edge_id") == fault["machine_id"])
    before = edge.filter(pl.col("window_end") <= fault["failure"]).tail(1).row(0, named=True)
    hours = (fault["failure"] - before["window_end"]).total_seconds() / 3600
    assert before["hours_to_failure"] == pytest.approx(hours) and not before["failed"]
    assert edge.filter(pl.col("window_start") <= fault["failure"],
                       pl.col("window_end") > fault["failure"]).get_column("failed").all()
    unlabelled = features.edge_telemetry(silver["silver.edge_telemetry"])
    assert unlabelled.get_column("hours_to_failure").is_null().all()


def test_failure_within_four_hours_is_predicted_and_judged_against_baselines(trained, windows):
    test = trained.holdout_metrics
    events = _test_failures(windows, trained.info)
    print(f"\nedge_health on {FLEET.duration_h / 24:g} simulated days, {EDGES} edges, horizon "
          f"{trained.info['horizon_h']:g} h, threshold {trained.info['threshold']:.3f}, test "
          f"windows: precision {test['precision']:.3f} recall {test['recall']:.3f} f1 "
          f"{test['f1']:.3f} auroc {test['auroc']:.3f} false alarms "
          f"{test['false_alarm_rate']:.4f}; failures caught >= {trained.info['min_lead_h']:g} h "
          f"ahead {test['event_recall']:.2f} of {events}, median lead "
          f"{test['lead_h_median']:.2f} h ({test['positives']:.0f} positive windows); "
          f"baselines: majority f1 {test['baseline.majority.f1']:.3f}, logistic f1 "
          f"{test['baseline.logistic.f1']:.3f} auroc {test['baseline.logistic.auroc']:.3f}")
    assert events >= 20, "too few failures in the test blocks to judge a model on"
    assert test["positives"] >= 10 * families.spec("edge_health").model.min_positives
    assert test["event_recall"] >= 0.7 and test["false_alarm_rate"] < 0.01
    assert test["precision"] > 0.8 and test["recall"] > 0.8
    # the baselines are measured on the same windows: "never fails" finds nothing
    assert test["baseline.majority.f1"] == 0.0 and test["baseline.majority.auroc"] == 0.5
    assert math.isfinite(test["baseline.logistic.f1"])
    passed = promotion_decision(gate_family(edge_health.FAMILY, {}), test, None, 0.01)
    assert passed.passed, passed.reason
    # the labels matter: trained on shuffled labels the same model is refused by the gate
    rng = np.random.default_rng(0)
    shuffled = windows.with_columns(pl.Series(
        "hours_to_failure", rng.permutation(windows.get_column("hours_to_failure").to_numpy())))
    noise = edge_health.train(shuffled, edge_health.DEFAULT_PARAMS, seed=0)
    refused = promotion_decision(gate_family(edge_health.FAMILY, {}), noise.holdout_metrics,
                                 None, 0.01)
    assert not refused.passed and "baseline" in refused.reason, refused.reason


def _test_failures(windows: pl.DataFrame, info: dict) -> int:
    """Failures with a positive window in the test blocks (what event recall counts)."""
    rows = edge_health.labelled(windows, info["horizon_h"], info["split"]["block"])
    ahead = rows.filter(pl.col("_split") == "test", pl.col(edge_health.TARGET))
    return ahead.select(pl.struct(
        "edge_id", (pl.col("window_end") + pl.duration(
            seconds=pl.col("hours_to_failure") * 3600.0)).dt.truncate("1m"))
        .n_unique()).item()


def test_the_threshold_comes_from_out_of_fold_training_and_validation_windows(windows):
    """Folds are whole days; each fold is scored by a model fit without it."""
    params = {**edge_health.DEFAULT_PARAMS, "max_iter": 50}
    data = edge_health.labelled(windows, 4.0, "1h").filter(pl.col("_split") == "train")
    y = data.get_column(edge_health.TARGET).to_numpy().astype(bool)
    x = data.select(pl.col("mem__mean")).to_numpy()
    seen: list[int] = []

    def fit_score(x_fit, y_fit, x_out):
        seen.append(len(x_fit))
        return [np.full(len(x_out[0]), float(y_fit.mean()))]

    labels, scores = edge_health.out_of_fold(x, y, data, 3, fit_score)
    assert len(labels) == len(scores) == data.height and len(seen) == 3
    assert sum(seen) == 2 * data.height  # every row is fit on twice and scored once
    days = data.get_column("window_start").dt.epoch("d") % 3
    assert data.group_by(days).len().height == 3
    assert edge_health.out_of_fold(x, y, data, 0, fit_score)[0].size == 0
    # the trained model records how it was thresholded
    model = edge_health.train(windows, params, seed=0)
    assert "out-of-fold" in model.info["threshold_from"]
    assert 0.05 < model.info["threshold"] < 0.95


def test_edge_health_drift_is_computed_on_its_health_columns(windows):
    """The family's drift inputs: ml/drift.py's family drift over features.edge_telemetry,
    per edge, on exactly the model's inputs; an edge whose cabinet runs hot drifts there."""
    recent = timedelta(hours=24)
    last = windows.get_column("window_start").max() - recent
    edge = windows.get_column("edge_id").unique().sort()[0]
    hot = windows.with_columns(pl.when((pl.col("edge_id") == edge)
                                       & (pl.col("window_start") > last))
                               .then(pl.col(c) + 15.0).otherwise(pl.col(c)).alias(c)
                               for c in ("temp__mean", "temp__max"))
    report = drift.family_drift("edge_health", hot, recent)
    measured = report.features.filter(pl.col("kind") == "input")
    assert set(measured.get_column("feature")) == set(edge_health.health_columns(windows))
    assert set(measured.get_column("segment")) == set(windows.get_column("edge_id"))
    flagged = measured.filter(pl.col("drifted"), pl.col("feature").str.starts_with("temp__"))
    assert edge in set(flagged.get_column("segment"))
    assert report.drifted


def test_the_horizon_is_a_parameter(windows):
    two = edge_health.labelled(windows, 2.0, "1h").get_column(edge_health.TARGET).sum()
    four = edge_health.labelled(windows, 4.0, "1h").get_column(edge_health.TARGET).sum()
    assert 0 < two < four
    # a down device is not a row to predict on
    assert not edge_health.labelled(windows, 4.0, "1h").get_column("failed").any()


def test_saved_model_evaluates_as_trained_and_alerts_on_an_edge_about_to_fail(
        trained, windows, silver, tmp_path):
    edge_health.save(trained, tmp_path)
    model, info = edge_health.load(tmp_path)
    assert edge_health.evaluate(model, windows, info) == pytest.approx(
        trained.holdout_metrics, nan_ok=True)
    # telemetry up to two hours before a failure: that edge, and only edges at risk, alert
    fault = silver["silver.fault_labels"].filter(
        pl.col("failure").is_not_null(), pl.col("fault_type") == "memory_leak").row(0, named=True)
    cut = fault["failure"] - timedelta(hours=2)
    scored = edge_health.at_risk(model, windows.filter(pl.col("window_end") <= cut))
    messages = edge_health.alert_messages(scored, info["horizon_h"], model_version="7")
    assert fault["machine_id"] in {m["edge_id"] for m in messages}
    for message in messages:
        assert message["kind"] == "edge_health" and message["model_version"] == "7"
        assert "within 4 h" in message["text"]
    healthy = windows.filter(pl.col("hours_to_failure").is_null() | (
        pl.col("hours_to_failure") > 12), ~pl.col("failed"))
    assert model.predict(healthy).mean() < 0.02


def test_the_family_is_registered_with_its_module():
    assert families.family("edge_health") is edge_health
    entry = families.spec("edge_health")
    assert (entry.feature_table, entry.drift.segment, entry.edge_kind) == (
        "features.edge_telemetry", "edge_id", None)
