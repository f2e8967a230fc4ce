"""Edge-health alerts: an edge about to fail fails the WARN check ``edges_at_risk`` with its
alert in the metadata, and the ``failed_checks`` sensor posts it to the webhook."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mfg_assets.defs import alerts
from mfg_assets.defs.features import feature_key
from mfg_assets.defs.health import CHECK, FEATURES, edges_at_risk
from mfg_assets.defs.models import champion_key, model_resources
from mfg_assets.defs.resources import default_resources
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.ml import edge_health, features
from mfg_assets.ml.registry import ModelRegistry, registered_name
from mfg_assets.sim import SimConfig
from mfg_assets_tests.defs.test_alerts import webhook  # noqa: F401 (a fixture)
from mfg_assets_tests.ml.simdata import simulate_silver

REPO = Path(__file__).resolve().parents[2]
# Two days of four edges, about one device fault per edge and day.
FLEET = SimConfig(seed=1, duration_h=48, telemetry_period_s=120.0, sources=("telemetry",),
                  device_fault_rate_per_day=1.0, fault_rate_per_day=0.0)


@pytest.fixture
def fleet(data_dir, monkeypatch):
    """The fleet's windows, an edge_health champion in MLflow, the model and the lake."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MFG_MLFLOW_ARTIFACTS", raising=False)
    silver = simulate_silver(FLEET)
    windows = features.edge_telemetry(silver["silver.edge_telemetry"],
                                      silver["silver.fault_labels"])
    registry = ModelRegistry()
    result = registry.run_search(edge_health, windows, budget=1, seed=0, data_versions={})
    registry.set_champion(result.model_name, result.version)
    champion = registry.champion(registered_name("edge_health"))
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = registry.load(edge_health, champion, Path(tmp))
    return windows, model, Lake(str(data_dir / "lake"), {})


def _check(instance: dg.DagsterInstance, lake: Lake, rows: pl.DataFrame):
    lake.overwrite(table(FEATURES), rows)
    defs = dg.Definitions(
        assets=[dg.AssetSpec(feature_key(FEATURES)), dg.AssetSpec(champion_key("edge_health"))],
        asset_checks=[edges_at_risk],
        jobs=[dg.define_asset_job("health", selection=dg.AssetSelection.checks(edges_at_risk))],
        resources={**default_resources(), **model_resources()},
    )
    result = defs.resolve_job_def("health").execute_in_process(instance=instance)
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def _cut(windows: pl.DataFrame, model, alarm: bool) -> tuple[pl.DataFrame, str | None]:
    """The table as of a window end where an edge about to fail alarms (its id), or where
    no edge alarms."""
    if alarm:  # an up window of a failing edge, 0.5-horizon h before its failure
        ahead = windows.filter(~pl.col("failed"), pl.col("hours_to_failure").is_between(
            0.5, model.horizon_h))
        ahead = ahead.with_columns(pl.Series("p", model.predict_proba(ahead)))
        row = ahead.sort("p", descending=True).row(0, named=True)
        assert row["p"] >= model.threshold, "the champion sees no failure coming"
        rows = windows.filter(pl.col("window_end") <= row["window_end"])
        return rows, row["edge_id"]
    for end in windows.get_column("window_end").unique().sort().to_list()[36:]:
        rows = windows.filter(pl.col("window_end") <= end)
        if not edge_health.at_risk(model, rows).get_column("alarm").any():
            return rows, None
    raise AssertionError("the fleet is never calm")


@pytest.mark.integration
def test_an_edge_about_to_fail_is_a_warn_check_that_the_sensor_posts(fleet, webhook,  # noqa: F811
                                                                     tmp_path, monkeypatch):
    windows, model, lake = fleet
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        calm, _ = _cut(windows, model, alarm=False)
        passed = _check(instance, lake, calm)
        assert passed.passed and passed.metadata["edges_at_risk"].value == []
        assert passed.metadata["edges_scored"].value == calm.get_column("edge_id").n_unique()

        rows, failing = _cut(windows, model, alarm=True)
        failed = _check(instance, lake, rows)
        assert not failed.passed and failed.severity == dg.AssetCheckSeverity.WARN
        assert failing in failed.metadata["edges_at_risk"].value

        context = dg.build_sensor_context(instance=instance)
        alerts.failed_checks(context)
    (message,) = webhook  # the calm evaluation passed: nothing posted for it
    assert (message["asset"], message["check"]) == ("features/edge_telemetry", CHECK)
    assert message["severity"] == "WARN"
    posted = {m["edge_id"]: m for m in message["metadata"]["alerts"]}
    assert failing in posted and failing in posted[failing]["text"]
    assert posted[failing]["kind"] == "edge_health" and posted[failing]["probability"] >= (
        model.threshold - 1e-3)
