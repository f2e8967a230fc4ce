"""DuckDB catalog for analysts: every Delta table as ``layer.table``.

DuckDB's delta extension cannot be downloaded on every machine, so each table's current
snapshot is handed to DuckDB as a pyarrow dataset (DuckDB scans it lazily, with filter
and projection push-down) behind a view in a schema named after its layer.
"""

from __future__ import annotations

import duckdb

from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import tables


def connect(lake: Lake | None = None, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view per existing Delta table (``silver.sensor_readings``)."""
    lake = lake or Lake()
    con = duckdb.connect(database)
    for spec in tables():
        if not lake.exists(spec):
            continue
        dataset = lake.table(spec).to_pyarrow_dataset()
        hidden = f"__delta_{spec.layer}_{spec.name}"
        con.register(hidden, dataset)
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{spec.layer}"')
        con.execute(
            f'CREATE OR REPLACE VIEW "{spec.layer}"."{spec.name}" AS SELECT * FROM "{hidden}"'
        )
    return con


def list_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema IN ('bronze', 'silver', 'features', 'models', 'edge', 'monitoring') "
        "ORDER BY 1"
    ).fetchall()
    return [row[0] for row in rows]
