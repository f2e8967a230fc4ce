"""Graph behaviour on a tmp_path lakehouse: replay -> bronze -> silver, twice, through the
named steps of the materialization plan that `mfg demo` and the loop's seed run."""

import base64

import dagster as dg
import orjson
import polars as pl
import pytest

from mfg_assets import plan
from mfg_assets.defs.resources import default_resources
from mfg_assets.defs.silver import silver_assets
from mfg_assets.lake.catalog import connect
from mfg_assets.lake.registry import table
from mfg_assets.sim import SimConfig, write_replay

DAY = "2026-11-01"
SENSOR_TOPIC = "acme/detroit/body/weld1/cell01/weld-01/sensors"
T0 = 1_793_491_200_000


def bad_lines() -> list[bytes]:
    good = {"timestamp": T0 + 1, "machineType": "welder",
            "readings": [{"sensor": "current", "value": 1.0}]}
    return [
        b"this is not json",
        orjson.dumps({"ts": T0, "topic": "acme/unknown/topic", "payload": good}),
        orjson.dumps({"ts": T0, "topic": SENSOR_TOPIC, "payload": "{\"timestamp\": 1, "}),
        orjson.dumps({"ts": T0, "topic": SENSOR_TOPIC,
                      "payload": {**good, "readings": [{"sensor": "current", "value": "x"}]}}),
        orjson.dumps({"ts": T0, "topic": "spBv1.0/detroit/DDATA/press1-gw/press-01",
                      "payload_b64": base64.b64encode(b"\x0a\xff\xff\x01").decode()}),
    ]


@pytest.fixture
def replay(data_dir):
    out = data_dir / "replay" / "run1"
    summary = write_replay(SimConfig(seed=3, duration_h=3, fault_rate_per_day=8), out)
    with (out / "messages.jsonl").open("ab") as handle:
        for line in bad_lines():
            handle.write(line + b"\n")
    return summary


def materialize_all(instance):
    runner = plan.Runner(instance, plan.resources())
    [first] = runner.run(plan.BRONZE)
    [second] = runner.run(plan.SILVER, [DAY])
    return first, second


def test_the_plan_is_derived_from_the_graph_and_covers_it_once():
    """Every asset of the code location is in exactly one step (lake maintenance has its own
    schedule), in the order of the graph: no step depends on a later one."""
    steps = {step.name: plan.step_keys(step) for step in plan.PLAN}
    assert [s.name for s in plan.PLAN] == ["bronze", "silver", "train", "bundles", "deploy"]
    every = set(plan.asset_graph().get_all_asset_keys())
    covered = [k for keys in steps.values() for k in keys]
    assert len(covered) == len(set(covered))  # disjoint
    outside = set(plan.OUTSIDE_PLAN.resolve(plan.asset_graph()))
    assert plan.LAKE_MAINTENANCE in outside and len(outside) >= 3  # maintenance, predictions/*
    assert every - set(covered) == outside
    assert {k.to_user_string() for k in steps["deploy"]} == {
        "edge/rollouts", "monitoring/inspection_stats", "monitoring/drift", "monitoring/cost",
        "monitoring/dashboard"}
    assert steps["silver"] == {dg.AssetKey(a.key.path) for a in silver_assets}
    graph = plan.asset_graph()
    for i, step in enumerate(plan.PLAN):
        later = set().union(*(steps[s.name] for s in plan.PLAN[i + 1:]))
        for key in steps[step.name]:
            assert not graph.get(key).parent_keys & later, (step.name, key)
    seed = plan.train_selection(["sensor_anomaly"]).resolve(graph)
    assert {k.to_user_string() for k in seed if k.path[0] == "models"} == {
        "models/sensor_anomaly", "models/sensor_anomaly_champion"}


def test_replay_to_silver_lands_everything_and_is_idempotent(data_dir, lake, replay):
    instance = dg.DagsterInstance.ephemeral()
    bronze_run, silver_run = materialize_all(instance)
    assert bronze_run.success and silver_run.success

    con = connect(lake)
    sensors = con.execute("SELECT count(*) FROM bronze.sensor_readings").fetchone()[0]
    quarantined = con.execute(
        "SELECT reason_code, count(*) FROM bronze.quarantine GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert dict(quarantined) == {
        "bad_payload": 2, "bad_replay_line": 1, "schema": 1, "unknown_topic": 1
    }
    # every message of the replay is either in a bronze table or in quarantine
    landed = sum(
        con.execute(f"SELECT count(*) FROM bronze.{name}").fetchone()[0]
        for name in ("sensor_readings", "process_runs", "inspection_images", "edge_telemetry",
                     "device_events")
    )
    assert landed + sum(n for _, n in quarantined) == replay.messages + len(bad_lines())

    # readings per machine and sensor: one per sample, none lost, none duplicated
    silver = lake.read(table("silver.sensor_readings"))
    per_series = silver.group_by("machine_id", "sensor").len()
    assert per_series.get_column("len").unique().to_list() == [3 * 3600 // 10]
    assert silver.select(pl.struct("machine_id", "sensor", "ts").is_unique().all()).item()
    assert sensors > 0 and silver.get_column("ingest_batch_id").str.starts_with("replay-").all()

    # a second run loads nothing new and rewrites the same partition: same rows
    again_bronze, again_silver = materialize_all(instance)
    assert again_bronze.success and again_silver.success
    assert lake.row_count(table("bronze.sensor_readings")) == sensors
    assert lake.read(table("silver.sensor_readings")).height == silver.height

    labels = lake.read(table("silver.fault_labels"))
    truth = replay.files["ground_truth"].read_bytes().splitlines()
    faults = [orjson.loads(line) for line in truth if orjson.loads(line)["kind"] == "fault"]
    assert faults and sorted(labels.get_column("fault_id")) == sorted(f["fault_id"] for f in faults)


def test_silver_checks_and_metadata_are_reported(data_dir, replay):
    instance = dg.DagsterInstance.ephemeral()
    bronze_run, silver_run = materialize_all(instance)
    # each run says which plan step made it
    for run, step in ((bronze_run, "bronze"), (silver_run, "silver")):
        assert instance.get_run_by_id(run.run_id).tags[plan.STEP_TAG] == step
    key = dg.AssetKey(["silver", "sensor_readings"])
    event = instance.get_latest_materialization_event(key)
    meta = event.asset_materialization.metadata
    assert meta["dagster/row_count"].value == 21 * 3 * 3600 // 10  # 21 series, 10 s period
    assert meta["delta_version_written"].value == 0
    assert meta["bronze_delta_version"].value is not None
    evaluations = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(key, name) for name in ("schema", "unique_key", "quarantine_share")]
    )
    assert len(evaluations) == 3
    assert all(e.status.value == "SUCCEEDED" for e in evaluations.values())


def test_duplicated_bronze_rows_are_deduplicated_in_silver(data_dir, lake, replay):
    """At-least-once into bronze (a replay file loaded twice), exactly-once in silver."""
    instance = dg.DagsterInstance.ephemeral()
    materialize_all(instance)
    once = lake.read(table("silver.process_runs")).height
    spec = table("bronze.process_runs")
    lake.append(spec, lake.read(spec))  # a redelivery of every message
    dg.materialize(silver_assets, partition_key=DAY, instance=instance,
                   resources=default_resources())
    assert lake.read(table("silver.process_runs")).height == once
    event = instance.get_latest_materialization_event(dg.AssetKey(["silver", "process_runs"]))
    assert event.asset_materialization.metadata["duplicates_removed"].value == once
