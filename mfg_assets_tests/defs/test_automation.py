"""The automation policy on the real asset graph: what each layer does when upstream moves."""

import threading
from datetime import UTC, datetime, timedelta

import dagster as dg

from mfg_assets.definitions import defs
from mfg_assets.defs.edge import edge_devices

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # between nightly retraining ticks


def key(path: str) -> dg.AssetKey:
    return dg.AssetKey(path.split("/"))


def requested(result: dg.EvaluateAutomationConditionsResult, path: str) -> int:
    return result.get_num_requested(key(path))


def evaluate(instance, cursor=None, when=NOW):
    return dg.evaluate_automation_conditions(
        defs=defs, instance=instance, cursor=cursor, evaluation_time=when
    )


def materialized(instance, *paths: str) -> None:
    for path in paths:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key(path)))


def test_layers_follow_upstream_changes_and_models_wait_for_their_cadence():
    instance = dg.DagsterInstance.ephemeral()
    first = evaluate(instance)  # a fresh plant: nothing has data yet
    assert requested(first, "models/sensor_anomaly") == 0

    materialized(instance, "bronze/sensor_readings")  # the gateway committed new data
    after_bronze = evaluate(instance, first.cursor)
    assert requested(after_bronze, "silver/sensor_readings") == 1  # latest day follows

    materialized(instance, "silver/sensor_readings", "silver/fault_labels")
    after_silver = evaluate(instance, after_bronze.cursor)
    assert requested(after_silver, "features/sensor_windows") == 1
    # feature refreshes do not retrain: models follow their nightly cadence (or drift)
    assert requested(after_silver, "models/sensor_anomaly") == 0

    nightly = evaluate(instance, after_silver.cursor, when=datetime(2026, 11, 23, 3, 5, tzinfo=UTC))
    assert requested(nightly, "models/sensor_anomaly") == 1


def test_champion_moves_only_after_a_passing_gate():
    instance = dg.DagsterInstance.ephemeral()
    cursor = evaluate(instance).cursor
    challenger = key("models/vision_defect")
    gate = dg.AssetCheckKey(challenger, "beats_champion")

    materialized(instance, "models/vision_defect")
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(asset_key=challenger, check_name=gate.name, passed=False)
    )
    refused = evaluate(instance, cursor)
    assert requested(refused, "models/vision_defect_champion") == 0

    materialized(instance, "models/vision_defect")
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(asset_key=challenger, check_name=gate.name, passed=True)
    )
    passed = evaluate(instance, refused.cursor)
    assert requested(passed, "models/vision_defect_champion") == 1


def test_rollouts_wait_while_bundles_are_being_built(tmp_path):
    """A cadence-triggered rollout during a bundle build used to finish in the same tick as
    the bundle and hide it (the new bundle then waited a whole cadence)."""
    building, release = threading.Event(), threading.Event()

    @dg.asset(key=["edge", "bundles"], partitions_def=edge_devices)
    def bundle_build() -> None:  # stands in for the real build: in progress until released
        building.set()
        release.wait(60)

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions(edge_devices.name, ["edge-weld1"])
        cursor = evaluate(instance).cursor
        build = threading.Thread(target=dg.materialize, args=([bundle_build],),
                                 kwargs={"instance": instance, "partition_key": "edge-weld1"})
        build.start()
        try:
            assert building.wait(60)
            # the rollout cadence (every 10 minutes) ticked while the bundle is being built
            during = evaluate(instance, cursor, when=NOW + timedelta(minutes=11))
            assert requested(during, "edge/rollouts") == 0
        finally:
            release.set()
            build.join(60)
        after = evaluate(instance, during.cursor, when=NOW + timedelta(minutes=12))
        assert requested(after, "edge/rollouts") == 1
