"""Silver: typed, deduplicated, schema-checked daily partitions of the bronze tables."""

from collections.abc import Callable

import dagster as dg
import polars as pl

from mfg_assets.defs.automation import SILVER_FRESHNESS, follow_new_data
from mfg_assets.defs.bronze import OWNER, bronze_key
from mfg_assets.defs.cost import with_cost
from mfg_assets.defs.metadata import table_metadata
from mfg_assets.defs.partitions import daily
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.names import BRONZE_GROUND_TRUTH, SILVER_FAULT_LABELS
from mfg_assets.lake.registry import TableSpec, table
from mfg_assets.lake.silver import TYPERS, check_partition, load_partition, type_fault_labels

# Above this share of refused rows a partition is suspicious even though nothing was lost.
QUARANTINE_WARN_SHARE = 0.01


def silver_asset(silver_name: str) -> dg.AssetsDefinition:
    spec = table(silver_name)
    bronze_name, typer = TYPERS[silver_name]
    key = dg.AssetKey(spec.asset_key_path)

    @dg.asset(
        key=key,
        deps=[bronze_key(bronze_name)],
        partitions_def=daily,
        group_name="silver",
        kinds={"delta", "polars"},
        owners=[OWNER],
        description=spec.description,
        metadata={"dagster/table_name": silver_name, "dedupe_key": ",".join(spec.key)},
        check_specs=_check_specs(key),
        automation_condition=follow_new_data(),
        freshness_policy=SILVER_FRESHNESS,
    )
    @with_cost  # cost/* metadata (mfg_assets.defs.cost)
    def _silver(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):
        return materialize_silver_partition(context, lakehouse, spec, table(bronze_name), typer)

    return _silver


def _check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "schema",
            asset=key,
            blocking=True,
            description="The written partition passes the pandera schema.",
        ),
        dg.AssetCheckSpec(
            "unique_key",
            asset=key,
            blocking=True,
            description="No two rows share the registry's dedupe key.",
        ),
        dg.AssetCheckSpec(
            "quarantine_share",
            asset=key,
            description=f"At most {QUARANTINE_WARN_SHARE:.0%} of rows refused.",
        ),
    ]


def materialize_silver_partition(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    spec: TableSpec,
    bronze: TableSpec,
    typer: Callable[[pl.DataFrame], pl.DataFrame],
) -> dg.MaterializeResult:
    lake = lakehouse.lake()
    load = load_partition(lake, spec, bronze, typer, context.partition_key, context.run.run_id)
    meta = table_metadata(lake, spec, load.write)
    meta |= {
        "bronze_delta_version": load.bronze_version,
        "bronze_messages": load.bronze_messages,
        "rows_quarantined": load.result.rejected.height,
        "duplicates_removed": load.result.duplicates,
    }
    return dg.MaterializeResult(
        metadata=meta, check_results=run_checks(spec, load.written, load.result.rejected.height)
    )


def run_checks(spec: TableSpec, written: pl.DataFrame, rejected: int) -> list[dg.AssetCheckResult]:
    checks = check_partition(spec, written, rejected)
    return [
        dg.AssetCheckResult(
            check_name="schema",
            passed=not checks.schema_errors,
            metadata={"errors": checks.schema_errors[:2000] or "none"},
        ),
        dg.AssetCheckResult(
            check_name="unique_key",
            passed=checks.duplicates == 0,
            metadata={"duplicate_rows": checks.duplicates, "key": ",".join(spec.key)},
        ),
        dg.AssetCheckResult(
            check_name="quarantine_share",
            passed=checks.share <= QUARANTINE_WARN_SHARE,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows_quarantined": rejected, "share": float(checks.share)},
        ),
    ]


silver_assets = [silver_asset(name) for name in TYPERS]


@dg.asset(
    key=dg.AssetKey(table(SILVER_FAULT_LABELS).asset_key_path),
    deps=[bronze_key(BRONZE_GROUND_TRUTH)],
    group_name="silver",
    kinds={"delta", "polars"},
    owners=[OWNER],
    description=table(SILVER_FAULT_LABELS).description,
    automation_condition=follow_new_data(),
)
def fault_labels(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    """Ground-truth fault intervals, the yardstick for anomaly and failure models."""
    lake = lakehouse.lake()
    spec = table(SILVER_FAULT_LABELS)
    labels = type_fault_labels(lake.read(table(BRONZE_GROUND_TRUTH)))
    write = lake.overwrite(spec, labels)
    return dg.MaterializeResult(metadata=table_metadata(lake, spec, write))
