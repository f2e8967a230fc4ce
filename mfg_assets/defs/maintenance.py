"""Lakehouse maintenance on a schedule: compaction, Z-order on hot columns, VACUUM."""

import dagster as dg

from mfg_assets.defs.automation import on_cadence
from mfg_assets.defs.bronze import OWNER
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.maintenance import DEFAULT_RETENTION_HOURS, maintain_layers
from mfg_assets.lake.names import MONITORING_LAKE_MAINTENANCE
from mfg_assets.lake.registry import table

MAINTENANCE_TABLE = MONITORING_LAKE_MAINTENANCE


class MaintenanceConfig(dg.Config):
    retention_hours: int = DEFAULT_RETENTION_HOURS
    layers: list[str] = ["bronze", "silver", "features"]


@dg.asset(
    key=dg.AssetKey(table(MAINTENANCE_TABLE).asset_key_path),
    group_name="monitoring",
    kinds={"delta"},
    owners=[OWNER],
    description="Nightly maintenance of the lakehouse: compacts the gateway's micro-batch "
    "files, Z-orders tables on the columns analysts filter by, vacuums files older than the "
    "retention window. One row per table in monitoring.lake_maintenance.",
    metadata={"dagster/table_name": MAINTENANCE_TABLE},
    automation_condition=on_cadence("0 2 * * *", "nightly"),
)
def lake_maintenance(
    context: dg.AssetExecutionContext, config: MaintenanceConfig, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    reports, rows, write = maintain_layers(lakehouse.lake(), config.layers,
                                           config.retention_hours, context.log.info)
    return dg.MaterializeResult(metadata={
        "tables": len(reports),
        "files_before": sum(r.files_before for r in reports),
        "files_after": sum(r.files_after for r in reports),
        "files_vacuumed": sum(r.vacuumed for r in reports),
        "delta_version_written": write.version,
        "summary": dg.MetadataValue.md(rows.select(
            "table", "files_before", "files_after", "vacuumed", "zordered_by", "seconds"
        ).to_pandas().to_markdown(index=False) if rows.height else "no tables yet"),
    })


maintenance_assets = [lake_maintenance]
