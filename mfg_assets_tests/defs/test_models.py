"""Graph behaviour of features -> models -> gate -> champion on a tmp_path lakehouse."""

from __future__ import annotations

import dagster as dg
import pytest

from mfg_assets.defs.bronze import bronze_from_replay
from mfg_assets.defs.features import feature_assets
from mfg_assets.defs.models import (
    GATE,
    TrainConfig,
    champion_key,
    model_assets,
    model_key,
    model_resources,
)
from mfg_assets.defs.resources import default_resources
from mfg_assets.defs.silver import fault_labels, silver_assets
from mfg_assets.lake.registry import table
from mfg_assets.ml.drift import absolute_errors, champion_scorer
from mfg_assets.ml.families import FAMILIES as REGISTRY
from mfg_assets.ml.families import family as load_family
from mfg_assets.ml.gate import promotion_decision
from mfg_assets.ml.registry import CHALLENGER, ModelRegistry, registered_name
from mfg_assets.sim import SimConfig, write_replay

DAY = "2026-11-01"
FAMILIES = ("process_yield", "sensor_anomaly")
FEATURES = ("features/sensor_windows", "features/process_units")


@pytest.fixture
def lakehouse(data_dir, monkeypatch):
    """bronze + silver of a small simulated day (no cameras, no edges: not needed here)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MFG_MLFLOW_ARTIFACTS", raising=False)
    config = SimConfig(seed=11, duration_h=12, fault_rate_per_day=6,
                       sources=("welding", "press", "process"))
    write_replay(config, data_dir / "replay" / "run1")
    instance = dg.DagsterInstance.ephemeral()
    resources = {**default_resources(), **model_resources()}
    assert dg.materialize([bronze_from_replay, fault_labels], instance=instance,
                          resources=resources).success
    assert dg.materialize(silver_assets, partition_key=DAY, instance=instance,
                          resources=resources).success
    return instance, resources


def train(instance, resources, margin: float) -> dg.ExecuteInProcessResult:
    keys = [dg.AssetKey.from_user_string(k) for k in FEATURES]
    keys += [model_key(f) for f in FAMILIES] + [champion_key(f) for f in FAMILIES]
    config = {
        model_key(f).to_python_identifier(): TrainConfig(budget=2, seed=0, margin=margin)
        for f in FAMILIES
    }
    return dg.materialize(
        [*feature_assets, *model_assets],
        selection=keys,
        instance=instance,
        resources=resources,
        run_config=dg.RunConfig(ops=config),
        raise_on_error=False,
    )


def gate(instance, family: str):
    key = dg.AssetCheckKey(model_key(family), GATE)
    return instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]


def test_model_specs_agree_with_the_family_modules():
    for spec in REGISTRY.values():
        module = load_family(spec.name)  # raises on a family name or feature table mismatch
        assert module.FAMILY.flavor in spec.kinds and "mlflow" in spec.kinds


def holdout(instance, family: str) -> dict[str, float]:
    meta = instance.get_latest_materialization_event(model_key(family)).asset_materialization
    return {k.removeprefix("holdout/"): v.value for k, v in meta.metadata.items()
            if k.startswith("holdout/")}


@pytest.mark.slow
def test_models_train_then_the_gate_decides_the_champion(lakehouse, data_dir):
    instance, resources = lakehouse
    first = train(instance, resources, margin=0.01)
    registry = ModelRegistry()
    specs = {spec.name: spec for spec in REGISTRY.values()}
    for family in FAMILIES:
        name = registered_name(family)
        module = load_family(family)
        meta = instance.get_latest_materialization_event(
            model_key(family)).asset_materialization.metadata
        assert meta["model_version"].value == "1"
        run = registry.client.get_run(meta["mlflow_run_id"].value)
        assert run.info.status == "FINISHED"
        assert registry.running_runs(family) == []
        # the model records the Delta versions it trained on: features and silver behind them
        data = meta["data_versions"].value
        assert data[specs[family].feature_table] == 0
        assert run.data.tags[f"mfg.data.{specs[family].feature_table}"] == "0"
        assert {"silver.sensor_readings", "silver.process_runs"} & set(data)
        assert any(k.startswith("figure/") for k in meta)
        # the gate's verdict is the pure decision on the hold-out numbers, and only a
        # passed gate moves the champion alias (a refused one keeps the step from running)
        passed = gate(instance, family).status.value == "SUCCEEDED"
        assert passed == promotion_decision(module.FAMILY, holdout(instance, family), None,
                                            0.01).passed
        champion = registry.champion(name)
        promoted = instance.get_latest_materialization_event(champion_key(family))
        if passed:
            assert str(champion.version) == "1" and promoted.run_id == first.run_id
        else:
            assert champion is None and promoted is None
    # the yield model meets its floors on this plant: at least one champion exists
    assert gate(instance, "process_yield").status.value == "SUCCEEDED"

    # same data and seed: the challenger can at best tie; with a 50 % margin it is refused,
    # the champion step does not run, and the alias stays where it was
    second = train(instance, resources, margin=0.5)
    assert not second.success
    for family in FAMILIES:
        name = registered_name(family)
        assert gate(instance, family).status.value == "FAILED"
        assert str(registry.version_by_alias(name, CHALLENGER).version) == "2"
        assert registry.running_runs(family) == []
    assert str(registry.champion(registered_name("process_yield")).version) == "1"
    promoted = instance.get_latest_materialization_event(champion_key("process_yield"))
    assert promoted.run_id == first.run_id

    # the drift report scores the yield champion's errors against labels on rows it did not
    # fit on (mfg_assets.ml.drift.champion_scorer): about its hold-out error
    scorer = champion_scorer(resources["mlflow"].registry, "process_yield")
    units = resources["lakehouse"].lake().read(table("features.process_units"))
    errors = absolute_errors(scorer.unseen(units), scorer)
    assert errors.size > 10
    assert errors.mean() == pytest.approx(holdout(instance, "process_yield")["mae"], rel=0.5)


def test_production_default_gates_on_the_whole_holdout():
    """The Dagster config's default: only the drift sensor narrows the gate's window."""
    assert TrainConfig().gate_recent_hours == 0.0
