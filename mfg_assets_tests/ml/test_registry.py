"""MLflow tracking/registry on tmp_path and the promotion gate's decision logic."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mlflow
import pytest

from mfg_assets.ml import registry as reg
from mfg_assets.ml.base import ModelFamily
from mfg_assets.ml.gate import promotion_decision, quiet_window_decision
from mfg_assets.ml.registry import ModelRegistry, registered_name
from mfg_assets_tests.ml import fake_family

AUC = ModelFamily("vision", "f1", True, {"f1": 0.5, "mae": 2.0}, "pytorch")
MAE = ModelFamily("yield", "mae", False, {"mae": 5.0}, "sklearn")


@pytest.fixture
def registry(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MFG_MLFLOW_ARTIFACTS", raising=False)
    return ModelRegistry()


# -- promotion_decision --------------------------------------------------------------


def test_first_model_must_pass_the_floors():
    assert promotion_decision(AUC, {"f1": 0.6, "mae": 1.0}, None, 0.01).passed
    refused = promotion_decision(AUC, {"f1": 0.4, "mae": 1.0}, None, 0.01)
    assert not refused.passed and "f1" in refused.reason and "floor" in refused.reason
    # a floor on an error metric is a ceiling
    ceiling = promotion_decision(AUC, {"f1": 0.9, "mae": 3.0}, None, 0.01)
    assert not ceiling.passed and "mae" in ceiling.reason
    missing = promotion_decision(AUC, {"f1": 0.9}, None, 0.01)
    assert not missing.passed and "mae" in missing.reason


def test_floors_can_be_judged_on_other_rows_than_the_comparison():
    """A drift retrain: compared on a recent window with few positives, floored on the
    whole hold-out, so one missed fault in the window does not decide the floor."""
    champion_recent = {"f1": 0.18, "mae": 1.0}
    recent = {"f1": 0.40, "mae": 1.0}  # below the 0.5 floor on a handful of rows
    whole = {"f1": 0.55, "mae": 1.0}
    assert not promotion_decision(AUC, recent, champion_recent, 0.01).passed
    passed = promotion_decision(AUC, recent, champion_recent, 0.01, floor_metrics=whole)
    assert passed.passed and "f1=0.55" in passed.reason and "0.4 vs champion 0.18" in passed.reason
    # the floors still bind: a challenger below them on the whole hold-out is refused
    poor = promotion_decision(AUC, {"f1": 0.9, "mae": 1.0}, champion_recent, 0.01,
                              floor_metrics={"f1": 0.45, "mae": 1.0})
    assert not poor.passed and "f1=0.45 misses its floor" in poor.reason


def test_a_window_without_positives_ranks_by_the_quiet_metric():
    family = replace(AUC, quiet_metric="false_alarm_rate")
    whole = {"f1": 0.60, "mae": 1.0}
    champion_whole = {"f1": 0.64, "mae": 1.0}  # -6.25 %: within a 10 % tolerance
    quiet, noisy = {"false_alarm_rate": 0.10}, {"false_alarm_rate": 0.90}
    passed = quiet_window_decision(family, whole, champion_whole, quiet, noisy, 0.01, 0.1)
    assert passed.passed and "false_alarm_rate 0.1 vs champion 0.9" in passed.reason
    # no better on the recent window: refused
    assert not quiet_window_decision(family, whole, champion_whole, noisy, noisy, 0.01,
                                     0.1).passed
    # quieter only because it stopped finding faults: refused on the whole hold-out
    lost = quiet_window_decision(family, {"f1": 0.55, "mae": 1.0}, champion_whole, quiet,
                                 noisy, 0.01, 0.1)
    assert not lost.passed and "more than 10.00% worse" in lost.reason
    # the tolerance is the bound: 1 % refuses what 10 % lets through
    assert not quiet_window_decision(family, whole, champion_whole, quiet, noisy, 0.01,
                                     0.01).passed
    # the floors still apply on the whole hold-out
    poor = quiet_window_decision(family, {"f1": 0.45, "mae": 1.0}, {"f1": 0.45, "mae": 1.0},
                                 quiet, noisy, 0.01, 0.1)
    assert not poor.passed and "misses its floor" in poor.reason
    with pytest.raises(ValueError, match="no quiet_metric"):
        quiet_window_decision(AUC, whole, champion_whole, quiet, noisy, 0.01, 0.1)


def test_challenger_must_beat_champion_by_relative_margin():
    champion = {"f1": 0.80, "mae": 1.0}
    assert promotion_decision(AUC, {"f1": 0.82, "mae": 1.0}, champion, 0.02).passed  # +2.5 %
    small = promotion_decision(AUC, {"f1": 0.81, "mae": 1.0}, champion, 0.02)  # +1.25 %
    assert not small.passed and "champion" in small.reason
    assert not promotion_decision(AUC, {"f1": 0.80, "mae": 1.0}, champion, 0.0).passed  # tie
    worse = promotion_decision(AUC, {"f1": 0.70, "mae": 1.0}, champion, 0.0)
    assert not worse.passed and "-12.50%" in worse.reason


def test_lower_is_better_primary_and_floors_still_apply_with_a_champion():
    assert promotion_decision(MAE, {"mae": 1.8}, {"mae": 2.0}, 0.05).passed  # 10 % smaller
    assert not promotion_decision(MAE, {"mae": 2.2}, {"mae": 2.0}, 0.0).passed
    # better than a poor champion, but still above the family's ceiling
    assert not promotion_decision(MAE, {"mae": 6.0}, {"mae": 9.0}, 0.0).passed
    assert not promotion_decision(MAE, {"mae": float("nan")}, None, 0.0).passed


# -- MLflow on tmp_path ----------------------------------------------------------------


def test_search_logs_child_runs_registers_challenger_and_closes_every_run(registry, data_dir):
    features = fake_family.features()
    result = registry.run_search(
        fake_family, features, budget=4, seed=0,
        data_versions={"features.fake": 3, "silver.sensor_readings": 7},
    )
    assert mlflow.active_run() is None
    assert registry.running_runs("fake") == []
    client = registry.client

    # one child per trial, under the parent; the diverging one is FAILED, not lost
    children = client.search_runs(
        [registry.experiment_id("fake")],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
    )
    assert len(children) == len(result.trials) == 4
    assert sorted(run.info.status for run in children) == ["FAILED"] + ["FINISHED"] * 3
    assert [t.error is not None for t in result.trials] == [False, False, False, True]
    best = min((t for t in result.trials if not t.error), key=lambda t: t.metrics["mae"])
    assert result.best_run_id == best.run_id and result.params == {"bias": 1.0}

    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mfg.data.features.fake"] == "3"
    assert parent.data.tags["mfg.data.silver.sensor_readings"] == "7"
    assert parent.data.params["bias"] == "1.0"
    assert parent.data.metrics["holdout_mae"] == pytest.approx(result.holdout_metrics["mae"])
    assert "val_mae" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert artifacts == {"model", "figures"}
    assert [a.path for a in client.list_artifacts(result.parent_run_id, "figures")] == [
        "figures/residuals.png"
    ]
    # artifacts live under data/mlflow/artifacts, the store in data/mlflow/mlflow.db
    assert (data_dir / "mlflow" / "mlflow.db").exists()
    assert result.artifact_uri.startswith((data_dir / "mlflow" / "artifacts").as_uri())

    version = registry.version_by_alias(registered_name("fake"), reg.CHALLENGER)
    assert version is not None and str(version.version) == result.version == "1"
    assert version.tags["mfg.data.features.fake"] == "3"
    assert registry.champion(registered_name("fake")) is None


def test_champion_is_re_evaluated_on_the_current_holdout(registry):
    first = registry.run_search(fake_family, fake_family.features(), 2, 0, {"features.fake": 0})
    registry.set_champion(first.model_name, first.version)
    assert str(registry.champion(first.model_name).version) == first.version

    # new data (noisier): the champion's numbers must come from it, not from its old run
    noisy = fake_family.features(noise=3.0, seed=1)
    version, metrics = registry.holdout_metrics_of(fake_family, reg.CHAMPION, noisy)
    assert version == first.version
    assert metrics["mae"] > first.holdout_metrics["mae"] * 2
    second = registry.run_search(fake_family, noisy, 2, 0, {"features.fake": 1})
    assert second.version == "2"
    assert str(registry.champion(first.model_name).version) == first.version  # untouched
    assert str(registry.version_by_alias(first.model_name, reg.CHALLENGER).version) == "2"
    assert registry.holdout_metrics_of(fake_family, "no-such-alias", noisy) is None


def test_a_failing_search_leaves_no_run_open(registry, monkeypatch):
    def broken_save(trained, path):
        raise OSError("disk full")

    monkeypatch.setattr(fake_family, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        registry.run_search(fake_family, fake_family.features(), 2, 0, {})
    assert mlflow.active_run() is None
    assert registry.running_runs("fake") == []
    runs = registry.client.search_runs([registry.experiment_id("fake")])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.status for r in parents] == ["FAILED"]
    assert registry.version_by_alias(registered_name("fake"), reg.CHALLENGER) is None


def test_every_trial_failing_is_an_error(registry, monkeypatch):
    monkeypatch.setattr(fake_family, "search_space", lambda budget, seed: [
        {"bias": fake_family.FAILING_BIAS}
    ])
    with pytest.raises(RuntimeError, match="every trial failed"):
        registry.run_search(fake_family, fake_family.features(), 1, 0, {})
    assert registry.running_runs("fake") == []


def test_tracking_uri_comes_from_the_environment(data_dir, monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert ModelRegistry().tracking_uri == uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert ModelRegistry().tracking_uri == f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
