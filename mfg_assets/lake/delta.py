"""Delta Lake reads and writes for registered tables (polars in, polars out).

Every write validates the frame against the table's schema first and returns the Delta
version it committed, found by a write id in the commit's metadata so that a concurrent
writer cannot make us report its version as ours.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from mfg_assets.lake.registry import TableSpec
from mfg_assets.settings import get_settings


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int | None  # None when nothing was written
    rows: int


class Lake:
    """The lakehouse root (local folder or object store) and its registered tables."""

    def __init__(self, root: str | None = None, storage_options: dict[str, str] | None = None):
        settings = get_settings() if root is None or storage_options is None else None
        self.root = (root or settings.lake_uri).rstrip("/")  # type: ignore[union-attr]
        if storage_options is None:
            storage_options = settings.storage_options  # type: ignore[union-attr]
        self.storage_options = storage_options or None

    def uri(self, spec: TableSpec) -> str:
        return f"{self.root}/{spec.layer}/{spec.name}"

    def exists(self, spec: TableSpec) -> bool:
        return DeltaTable.is_deltatable(self.uri(spec), storage_options=self.storage_options)

    def table(self, spec: TableSpec, version: int | None = None) -> DeltaTable:
        return DeltaTable(self.uri(spec), version=version, storage_options=self.storage_options)

    def version(self, spec: TableSpec) -> int | None:
        try:
            return self.table(spec).version()
        except TableNotFoundError:
            return None

    def row_count(self, spec: TableSpec) -> int:
        """Rows in the current snapshot, from the Delta log's file statistics (no scan)."""
        actions = pl.DataFrame(self.table(spec).get_add_actions(flatten=True))
        return int(actions.get_column("num_records").sum()) if actions.height else 0

    # -- reads -----------------------------------------------------------------------

    def scan(self, spec: TableSpec, version: int | None = None) -> pl.LazyFrame:
        """A lazy frame over the table; an empty frame of the right schema if none exists."""
        if not self.exists(spec):
            return spec.empty().lazy()
        return pl.scan_delta(self.uri(spec), version=version, storage_options=self.storage_options)

    def read(self, spec: TableSpec, version: int | None = None) -> pl.DataFrame:
        return self.scan(spec, version).collect()

    def read_partition(self, spec: TableSpec, value: date | str) -> pl.DataFrame:
        """Rows of one partition, pruned by Delta partition values (no full scan)."""
        if spec.partition_by is None:
            raise ValueError(f"{spec.qualified_name} is not partitioned")
        if not self.exists(spec):
            return spec.empty()
        day = value if isinstance(value, date) else date.fromisoformat(value)
        arrow = self.table(spec).to_pyarrow_table(filters=[(spec.partition_by, "=", day)])
        return pl.from_arrow(arrow).cast(spec.polars_schema)  # type: ignore[return-value]

    # -- writes ----------------------------------------------------------------------

    def append(self, spec: TableSpec, frame: pl.DataFrame, **metadata: str) -> WriteResult:
        return self._write(spec, frame, mode="append", predicate=None, metadata=metadata)

    def overwrite_partition(
        self, spec: TableSpec, frame: pl.DataFrame, value: date | str, **metadata: str
    ) -> WriteResult:
        """Replace one partition atomically (idempotent re-materialization of a day)."""
        if spec.partition_by is None:
            raise ValueError(f"{spec.qualified_name} is not partitioned")
        day = value if isinstance(value, date) else date.fromisoformat(value)
        outside = frame.filter(pl.col(spec.partition_by) != day)
        if outside.height:
            raise ValueError(
                f"{outside.height} rows of {spec.qualified_name} fall outside partition {value}"
            )
        predicate = f"{spec.partition_by} = '{day.isoformat()}'"
        return self._write(
            spec, frame, mode="overwrite", predicate=predicate, metadata=metadata, allow_empty=True
        )

    def replace_where(
        self, spec: TableSpec, frame: pl.DataFrame, predicate: str, **metadata: str
    ) -> WriteResult:
        """Atomically replace the rows matching ``predicate`` with ``frame``."""
        return self._write(
            spec, frame, mode="overwrite", predicate=predicate, metadata=metadata, allow_empty=True
        )

    def overwrite(self, spec: TableSpec, frame: pl.DataFrame, **metadata: str) -> WriteResult:
        return self._write(
            spec, frame, mode="overwrite", predicate=None, metadata=metadata, allow_empty=True
        )

    def ensure(self, spec: TableSpec) -> None:
        """Create the table empty if it does not exist yet (readers then see a schema)."""
        if not self.exists(spec):
            self._write(
                spec, spec.empty(), mode="append", predicate=None, metadata={}, allow_empty=True
            )

    def _write(
        self,
        spec: TableSpec,
        frame: pl.DataFrame,
        *,
        mode: str,
        predicate: str | None,
        metadata: dict[str, str],
        allow_empty: bool = False,
    ) -> WriteResult:
        if frame.height == 0 and not allow_empty:
            return WriteResult(spec.qualified_name, None, 0)
        frame = conform(spec, frame)
        write_id = uuid.uuid4().hex
        custom: dict[str, Any] = {"mfg.write_id": write_id, **metadata}
        write_deltalake(
            self.uri(spec),
            frame.to_arrow(),
            mode=mode,  # type: ignore[arg-type]
            predicate=predicate,
            partition_by=[spec.partition_by] if spec.partition_by else None,
            storage_options=self.storage_options,
            commit_properties=CommitProperties(custom_metadata=custom),
            schema_mode=_schema_mode(mode, predicate),
        )
        return WriteResult(spec.qualified_name, self._version_of(spec, write_id), frame.height)

    def _version_of(self, spec: TableSpec, write_id: str) -> int | None:
        # deltalake 1.6 labels history() entries by counting down from the snapshot's version
        # but lists commits up to the log's latest: a commit landing in between (a concurrent
        # writer) shifts every label. Trust the labels only when no commit landed meanwhile.
        dt = self.table(spec)
        for _ in range(20):
            before = dt.version()
            history = dt.history(limit=20)
            dt.update_incremental()
            if dt.version() == before:
                break
        for commit in history:
            if commit.get("mfg.write_id") == write_id:
                return int(commit["version"])
        return None


def _schema_mode(mode: str, predicate: str | None) -> str | None:
    """Let a table's schema evolve with its registry entry: a whole-table rewrite takes the
    new schema; an append or a partition rewrite may add columns (wide feature tables gain
    columns with new sensors; silver tables gained their place columns), older rows read
    them as null."""
    if mode == "overwrite" and predicate is None:
        return "overwrite"
    return "merge"


def conform(spec: TableSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """Select and order the table's columns, cast to its types, and validate the schema.

    A frame that does not fit raises here, before anything is committed.
    """
    schema = dict(spec.polars_schema)
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise ValueError(f"{spec.qualified_name}: missing columns {missing}")
    patterns = spec.pattern_columns
    extra = []
    for name in frame.columns:
        if name in schema:
            continue
        dtype = next((dtype for regex, dtype in patterns if regex.match(name)), None)
        if dtype is None:
            extra.append(name)
        else:
            schema[name] = dtype  # a wide table's column named by the data
    if extra:
        raise ValueError(f"{spec.qualified_name}: undeclared columns {extra}")
    frame = frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())
    spec.schema.validate(frame)
    return frame
