"""Sensors: notice data the gateway committed outside Dagster runs."""

import json

import dagster as dg

from mfg_assets.defs.automation import sensor_interval
from mfg_assets.defs.bronze import BRONZE_TABLES, bronze_key
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.lineage import changed_versions
from mfg_assets.lake.registry import table


def recorded_versions(instance: dg.DagsterInstance) -> dict[str, int]:
    """The Delta version each bronze table's latest materialization recorded (its data
    version). The sensor's first tick starts from these: started with an empty cursor it
    reported every bronze table as new, and `make dev` on a built lakehouse (after
    `make demo`) rebuilt silver, features, drift and the dashboard for nothing."""
    known = {}
    for name in BRONZE_TABLES:
        event = instance.get_latest_materialization_event(bronze_key(name))
        tags = event.asset_materialization.tags if event and event.asset_materialization else {}
        version = (tags or {}).get("dagster/data_version", "")
        if version.isdigit():
            known[name] = int(version)
    return known


@dg.sensor(
    name="bronze_delta_versions",
    minimum_interval_seconds=sensor_interval(15),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports a bronze table as updated when the gateway commits a new Delta "
    "version, so silver and everything downstream follow live data by themselves.",
)
def bronze_delta_versions(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource):
    seen = json.loads(context.cursor) if context.cursor else recorded_versions(context.instance)
    lake = lakehouse.lake()
    changed = changed_versions(lake, BRONZE_TABLES, seen)
    if not changed:
        return dg.SkipReason("no new bronze commits")
    events = [
        dg.AssetMaterialization(
            asset_key=bronze_key(name),
            description="new Delta commit observed (gateway or replay load)",
            metadata={"delta_version": version, "table_rows": lake.row_count(table(name))},
            tags={"dagster/data_version": str(version)},
        )
        for name, version in changed.items()
    ]
    return dg.SensorResult(asset_events=events, cursor=json.dumps({**seen, **changed}))
