"""Lakehouse maintenance: compaction, Z-order on the hot query columns, VACUUM.

Micro-batches leave many small files (the gateway commits every second); analysts' queries
("one machine, one day") read far fewer bytes once files are compacted and rows of a
machine sit together. Plain functions over registered tables; Dagster schedules them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import polars as pl
from deltalake import WriterProperties

from mfg_assets.lake.delta import Lake, WriteResult
from mfg_assets.lake.names import MONITORING_LAKE_MAINTENANCE
from mfg_assets.lake.registry import TableSpec, table, tables

# Columns analysts filter on, per table: Z-order clusters rows by them inside each file.
HOT_COLUMNS: dict[str, tuple[str, ...]] = {
    "silver.sensor_readings": ("machine_id", "sensor"),
    "silver.process_runs": ("machine_id",),
    "silver.edge_predictions": ("edge_id", "model"),
    "bronze.sensor_readings": ("asset_id",),
}
ROW_GROUP_ROWS = 256 * 1024
DEFAULT_RETENTION_HOURS = 7 * 24  # time travel kept for a week before files are vacuumed


@dataclass(frozen=True)
class MaintenanceReport:
    table: str
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    files_added: int
    files_removed: int
    vacuumed: int
    zordered_by: str
    seconds: float

    def row(self) -> dict[str, object]:
        return asdict(self)


def file_stats(lake: Lake, spec: TableSpec) -> tuple[int, int]:
    """(number of data files, total bytes) in the current snapshot."""
    actions = pl.DataFrame(lake.table(spec).get_add_actions(flatten=True))
    if actions.height == 0:
        return 0, 0
    return actions.height, int(actions.get_column("size_bytes").sum())


def maintain(
    lake: Lake,
    spec: TableSpec,
    *,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    zorder: bool = True,
) -> MaintenanceReport:
    """Compact (or Z-order, where the table has hot columns) then vacuum one table."""
    started = time.perf_counter()
    files_before, bytes_before = file_stats(lake, spec)
    table = lake.table(spec)
    columns = HOT_COLUMNS.get(spec.qualified_name, ()) if zorder else ()
    # Small row groups in the rewritten files: Z-order only pays off when a reader can skip
    # row groups by their min/max statistics, and the writer's default (about 1 M rows)
    # leaves a few groups per file that each span most machines.
    props = WriterProperties(max_row_group_size=ROW_GROUP_ROWS)
    metrics = (table.optimize.z_order(list(columns), writer_properties=props) if columns
               else table.optimize.compact(writer_properties=props))
    # Vacuum keeps `retention_hours` of history so time travel (and readers still on an
    # older snapshot) keep working; files older than that and no longer referenced go.
    vacuumed = lake.table(spec).vacuum(
        retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
    )
    files_after, bytes_after = file_stats(lake, spec)
    return MaintenanceReport(
        table=spec.qualified_name,
        files_before=files_before,
        files_after=files_after,
        bytes_before=bytes_before,
        bytes_after=bytes_after,
        files_added=int(metrics.get("numFilesAdded", 0)),
        files_removed=int(metrics.get("numFilesRemoved", 0)),
        vacuumed=len(vacuumed),
        zordered_by=",".join(columns),
        seconds=round(time.perf_counter() - started, 3),
    )


def maintain_layers(lake: Lake, layers: Iterable[str],
                    retention_hours: int = DEFAULT_RETENTION_HOURS,
                    log: Callable[[str], None] | None = None,
                    run_at: datetime | None = None,
                    ) -> tuple[list[MaintenanceReport], pl.DataFrame, WriteResult]:
    """Maintain every existing table of ``layers`` and append one row per table to
    ``monitoring.lake_maintenance``: (the reports, the rows appended, the write)."""
    run_at = run_at or datetime.now(UTC)
    reports = []
    for spec in (s for layer in layers for s in tables(layer)):
        if lake.exists(spec):
            reports.append(maintain(lake, spec, retention_hours=retention_hours))
            if log is not None:
                log(f"{spec.qualified_name}: {reports[-1]}")
    target = table(MONITORING_LAKE_MAINTENANCE)
    rows = pl.DataFrame([{"run_at": run_at, **r.row()} for r in reports],
                        schema=target.polars_schema)
    return reports, rows, lake.append(target, rows)


def files_read_for(lake: Lake, spec: TableSpec, partition_value: str) -> tuple[int, int]:
    """(files a one-partition query reads, files in the table): partition pruning at work."""
    if spec.partition_by is None:
        raise ValueError(f"{spec.qualified_name} is not partitioned")
    table = lake.table(spec)
    pruned = table.file_uris(file_pruning_predicate=[(spec.partition_by, "=", partition_value)])
    return len(pruned), len(table.file_uris())
