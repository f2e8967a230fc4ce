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
from mfg_assets.lake.names import BRONZE_GROUND_TRUTH, SILVER_FAULT_LABELS, SILVER_QUARANTINE
from mfg_assets.lake.registry import TableSpec, table
from mfg_assets.lake.silver import TYPERS, refine, schema_errors, type_fault_labels

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
    day = context.partition_key
    bronze_version = lake.version(bronze)
    raw = lake.read_partition(bronze, day)
    result = refine(spec, typer(raw), run_id=context.run.run_id, partition_key=day)
    write = lake.overwrite_partition(spec, result.valid, day, run_id=context.run.run_id)
    quarantine = table(SILVER_QUARANTINE)
    lake.replace_where(
        quarantine,
        result.rejected,
        f"stage = '{spec.qualified_name}' AND partition_key = '{day}'",
    )
    written = lake.read_partition(spec, day)  # checks look at what was committed
    meta = table_metadata(lake, spec, write)
    meta |= {
        "bronze_delta_version": bronze_version,
        "bronze_messages": raw.height,
        "rows_quarantined": result.rejected.height,
        "duplicates_removed": result.duplicates,
    }
    return dg.MaterializeResult(
        metadata=meta, check_results=run_checks(spec, written, result.rejected.height)
    )


def run_checks(spec: TableSpec, written: pl.DataFrame, rejected: int) -> list[dg.AssetCheckResult]:
    errors = schema_errors(spec, written)
    duplicates = written.height - written.unique(subset=list(spec.key)).height
    total = written.height + rejected
    share = rejected / total if total else 0.0
    return [
        dg.AssetCheckResult(
            check_name="schema",
            passed=not errors,
            metadata={"errors": errors[:2000] or "none"},
        ),
        dg.AssetCheckResult(
            check_name="unique_key",
            passed=duplicates == 0,
            metadata={"duplicate_rows": duplicates, "key": ",".join(spec.key)},
        ),
        dg.AssetCheckResult(
            check_name="quarantine_share",
            passed=share <= QUARANTINE_WARN_SHARE,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows_quarantined": rejected, "share": float(share)},
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
