"""DuckDB catalog for analysts: every Delta table as ``layer.table``, read-only and sandboxed.

DuckDB's delta extension cannot be downloaded on every machine, so each table's current
snapshot is handed to DuckDB as a pyarrow dataset (DuckDB scans it lazily, with filter
and projection push-down) behind a view in a schema named after its layer.

Analysts read; they never write, and a query cannot reach anything but the registered
tables: once the views exist the connection turns off external access (no file reads or
writes: read_text, read_csv, COPY ... TO, ATTACH, EXPORT), extension install/load, and
locks its configuration so no query can turn any of it back on. The tables themselves are
read by deltalake/pyarrow in this process, before the lock.
"""

from __future__ import annotations

import warnings

import duckdb

from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import tables

LAYERS = ("bronze", "silver", "features", "models", "edge", "monitoring", "predictions")

# Given at connect time: settings that must hold before any statement runs.
_CONNECT_CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}
# Set after the tables are registered, in this order (the lock must come last).
_LOCKDOWN = (
    "SET enable_external_access = false",
    "SET allow_persistent_secrets = false",
    "SET lock_configuration = true",
)


class TableSkipped(UserWarning):
    """A registered table could not be opened; the catalog goes on without it."""


def connect(lake: Lake | None = None) -> duckdb.DuckDBPyConnection:
    """A sandboxed in-memory DuckDB connection with a view per readable Delta table.

    A table whose Delta log cannot be read is skipped with a :class:`TableSkipped` warning
    naming it; every other table stays queryable.
    """
    lake = lake or Lake()
    con = duckdb.connect(":memory:", config=dict(_CONNECT_CONFIG))
    try:
        for spec in tables():
            try:
                if not lake.exists(spec):
                    continue
                dataset = lake.table(spec).to_pyarrow_dataset()
            except Exception as exc:  # a broken log or unreadable store: skip, say which
                warnings.warn(
                    f"{spec.qualified_name} skipped: cannot open it ({exc})",
                    TableSkipped,
                    stacklevel=2,
                )
                continue
            hidden = f"__delta_{spec.layer}_{spec.name}"
            con.register(hidden, dataset)
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{spec.layer}"')
            con.execute(
                f'CREATE OR REPLACE VIEW "{spec.layer}"."{spec.name}" AS SELECT * FROM "{hidden}"'
            )
        for statement in _LOCKDOWN:
            con.execute(statement)
    except BaseException:
        con.close()
        raise
    return con


def list_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    layers = ", ".join(f"'{layer}'" for layer in LAYERS)
    rows = con.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        f"WHERE table_schema IN ({layers}) ORDER BY 1"
    ).fetchall()
    return [row[0] for row in rows]
