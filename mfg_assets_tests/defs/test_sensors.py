"""The bronze sensor turns gateway commits into asset events (with the Delta version)."""

import dagster as dg
import polars as pl

from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.defs.sensors import bronze_delta_versions
from mfg_assets.lake.registry import table


def _append_quarantine_row(lake) -> None:
    spec = table("bronze.quarantine")
    row = {
        "quarantine_id": "q1",
        "ingest_batch_id": "b",
        "source": "gateway:test",
        "topic": "a/b",
        "received_at": pl.datetime(2026, 11, 1, time_zone="UTC"),
        "stage": "contract",
        "reason_code": "schema",
        "reason": "schema: x",
        "payload": "{}",
        "partition_key": None,
    }
    lake.append(
        spec, pl.select(**{k: v if isinstance(v, pl.Expr) else pl.lit(v) for k, v in row.items()})
    )


def test_sensor_reports_new_versions_once(lake):
    instance = dg.DagsterInstance.ephemeral()
    resources = {"lakehouse": LakehouseResource(root=lake.root)}
    context = dg.build_sensor_context(instance=instance, resources=resources)
    assert isinstance(bronze_delta_versions(context), dg.SkipReason)  # empty lakehouse

    _append_quarantine_row(lake)
    result = bronze_delta_versions(context)
    assert [e.asset_key for e in result.asset_events] == [dg.AssetKey(["bronze", "quarantine"])]
    assert result.asset_events[0].metadata["delta_version"].value == 0

    again = dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor)
    assert isinstance(bronze_delta_versions(again), dg.SkipReason)  # nothing new since
    _append_quarantine_row(lake)
    newer = bronze_delta_versions(again)
    assert newer.asset_events[0].metadata["delta_version"].value == 1


def test_first_tick_on_a_built_lakehouse_reports_only_what_runs_did_not_record(lake):
    """`make dev` after `make demo`: the sensor starts without a cursor on a lakehouse whose
    bronze runs recorded their Delta versions; it reports nothing they already recorded."""
    from mfg_assets.defs.bronze import bronze_key

    _append_quarantine_row(lake)
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=bronze_key("bronze.quarantine"), tags={"dagster/data_version": "0"}))
    context = dg.build_sensor_context(
        instance=instance, resources={"lakehouse": LakehouseResource(root=lake.root)})
    assert isinstance(bronze_delta_versions(context), dg.SkipReason)
    _append_quarantine_row(lake)  # a commit after the recorded one is still reported
    result = bronze_delta_versions(dg.build_sensor_context(
        instance=instance, resources={"lakehouse": LakehouseResource(root=lake.root)}))
    assert result.asset_events[0].metadata["delta_version"].value == 1
