"""Materialization metadata people want to see for a Delta table write."""

from __future__ import annotations

from typing import Any

import dagster as dg

from mfg_assets.lake.delta import Lake, WriteResult
from mfg_assets.lake.registry import TableSpec


def table_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in spec.polars_schema.items()]
    )


def table_metadata(lake: Lake, spec: TableSpec, write: WriteResult | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "dagster/uri": lake.uri(spec),
        "dagster/column_schema": table_schema(spec),
        "dagster/table_name": spec.qualified_name,
        "delta_version": lake.version(spec),
    }
    if lake.exists(spec):
        meta["table_rows"] = lake.row_count(spec)
    if write is not None:
        meta["dagster/row_count"] = write.rows
        meta["delta_version_written"] = write.version
    return meta
