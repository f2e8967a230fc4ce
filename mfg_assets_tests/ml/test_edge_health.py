"""Edge health: log templates, point-in-time health features, and a model that sees a device
failure hours ahead on a simulated multi-day fleet (figures printed for the issue note)."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from mfg_assets.lake.registry import table
from mfg_assets.ml import edge_health, families, features
from mfg_assets.ml.gate import gate_family, promotion_decision
from mfg_assets.sim import SimConfig
from mfg_assets_tests.ml.simdata import simulate_silver

# Six days of four edges, heartbeats every 2 minutes, about one device fault per edge-2-days.
FLEET = SimConfig(seed=1, duration_h=24 * 6, telemetry_period_s=120.0, sources=("telemetry",),
                  device_fault_rate_per_day=0.5, fault_rate_per_day=0.0)


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
    print(f"\nedge_health on {FLEET.duration_h / 24:g} simulated days, 4 edges, horizon "
          f"{trained.info['horizon_h']:g} h, test windows: precision {test['precision']:.3f} "
          f"recall {test['recall']:.3f} f1 {test['f1']:.3f} auroc {test['auroc']:.3f} "
          f"false alarms {test['false_alarm_rate']:.4f}; failures caught >= "
          f"{trained.info['min_lead_h']:g} h ahead {test['event_recall']:.2f}, median lead "
          f"{test['lead_h_median']:.2f} h ({test['positives']:.0f} positive windows); "
          f"baselines f1: majority {test['baseline.majority.f1']:.3f}, logistic "
          f"{test['baseline.logistic.f1']:.3f}")
    assert test["positives"] >= families.spec("edge_health").model.min_positives
    assert test["event_recall"] >= 0.6 and test["false_alarm_rate"] < 0.05
    # the baselines are measured on the same windows: "never fails" finds nothing
    assert test["baseline.majority.f1"] == 0.0 and test["baseline.majority.auroc"] == 0.5
    assert test["f1"] > 0.5 and math.isfinite(test["baseline.logistic.f1"])
    # the labels matter: trained on shuffled labels the same model is refused by the gate
    rng = np.random.default_rng(0)
    shuffled = windows.with_columns(pl.Series(
        "hours_to_failure", rng.permutation(windows.get_column("hours_to_failure").to_numpy())))
    noise = edge_health.train(shuffled, edge_health.DEFAULT_PARAMS, seed=0)
    refused = promotion_decision(gate_family(edge_health.FAMILY, {}), noise.holdout_metrics,
                                 None, 0.01)
    assert not refused.passed and "baseline" in refused.reason, refused.reason


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
