"""Bronze -> silver: typed, checked, deduplicated rows (plain functions, no Dagster).

Each ``type_*`` function turns raw bronze messages into typed rows and keeps the source
message alongside (``_src_*`` columns) so that a row that fails the silver schema can be
quarantined with its reason and its original payload. :func:`refine` then splits valid
from rejected rows: schema failures, timestamps outside a plausible window, and conflicts
(two rows with one registry key but different values: the first delivered is kept, each
later one is quarantined with both values). Exact redeliveries (at-least-once) are dropped
as duplicates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandera.polars as pa
import polars as pl

from mfg_assets.lake.delta import Lake, WriteResult
from mfg_assets.lake.names import SILVER_QUARANTINE
from mfg_assets.lake.registry import TableSpec, table

SRC_COLUMNS = ("_src_message_id", "_src_topic", "_src_payload", "_src_received_at")
PLACE = ("enterprise", "site", "area", "line", "cell")
MS = "ms"
# Columns that record where a row came from, not what it says: two deliveries of one fact
# differ here and are still the same fact.
LINEAGE = ("ingest_batch_id",)


@dataclass(frozen=True)
class PlausibleWindow:
    """Timestamps a plant can have produced: a year-1 or year-9999 value (or epoch 0 from a
    missing field) is a broken clock or a unit mix-up, never data."""

    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    ahead: timedelta = timedelta(days=1)  # allowed clock skew into the future
    latest: datetime | None = None  # fixed upper bound; default: now + ``ahead``

    def bounds(self) -> tuple[datetime, datetime]:
        return self.earliest, self.latest or datetime.now(UTC) + self.ahead

    def describe(self) -> str:
        low, high = self.bounds()
        return f"{low:%Y-%m-%d %H:%M:%S} .. {high:%Y-%m-%d %H:%M:%S} UTC"


DEFAULT_WINDOW = PlausibleWindow()


@dataclass(frozen=True)
class RefineResult:
    valid: pl.DataFrame
    rejected: pl.DataFrame  # silver.quarantine rows
    duplicates: int

    @property
    def rows_in(self) -> int:
        return self.valid.height + self.rejected.height + self.duplicates


def schema_errors(spec: TableSpec, frame: pl.DataFrame) -> str:
    """Pandera's report of every way ``frame`` breaks ``spec``'s schema; "" when it holds."""
    try:
        spec.schema.validate(frame, lazy=True)
    except Exception as exc:  # pandera raises SchemaErrors; any failure is a failed check
        return str(exc)
    return ""


def _src(bronze: pl.DataFrame) -> list[pl.Expr]:
    return [
        pl.col("message_id").alias("_src_message_id"),
        pl.col("topic").alias("_src_topic"),
        pl.col("payload").alias("_src_payload"),
        pl.col("received_at").alias("_src_received_at"),
    ]


def _ms_to_ts(expr: pl.Expr) -> pl.Expr:
    return pl.from_epoch(expr, time_unit=MS).dt.replace_time_zone("UTC").dt.cast_time_unit("us")


def _place() -> list[pl.Expr]:
    return [pl.col(name) for name in PLACE]


_READING = pl.Struct(
    {"sensor": pl.String, "value": pl.Float64, "unit": pl.String, "timestamp": pl.Int64}
)
_SENSOR_PAYLOAD = pl.Struct(
    {"timestamp": pl.Int64, "machineType": pl.String, "readings": pl.List(_READING)}
)


def type_sensor_readings(bronze: pl.DataFrame) -> pl.DataFrame:
    """One row per reading; a Sparkplug metric keeps its own timestamp when it has one."""
    doc = pl.col("payload").str.json_decode(_SENSOR_PAYLOAD)
    exploded = (
        bronze.select(*_src(bronze), *_place(), "asset_id", "ingest_batch_id", doc.alias("doc"))
        .with_columns(
            pl.col("doc").struct.field("timestamp").alias("_msg_ts"),
            pl.col("doc").struct.field("machineType").alias("machine_type"),
            pl.col("doc").struct.field("readings").alias("_reading"),
        )
        .explode("_reading")
        .filter(pl.col("_reading").is_not_null())
    )
    reading = pl.col("_reading").struct
    return exploded.select(
        _ms_to_ts(pl.coalesce(reading.field("timestamp"), pl.col("_msg_ts"))).alias("ts"),
        *_place(),
        "ingest_batch_id",
        pl.col("asset_id").alias("machine_id"),
        pl.col("machine_type").fill_null("unknown"),
        reading.field("sensor").alias("sensor"),
        reading.field("value").alias("value"),
        reading.field("unit").alias("unit"),
        *SRC_COLUMNS,
    ).with_columns(pl.col("ts").dt.date().alias("date"))


_PROCESS_PAYLOAD = pl.Struct(
    {
        "timestamp": pl.Int64,
        "unitId": pl.String,
        "product": pl.String,
        "materialLot": pl.String,
        "yield": pl.Float64,
        "passed": pl.Boolean,
    }
)


def type_process_runs(bronze: pl.DataFrame) -> pl.DataFrame:
    doc = pl.col("payload").str.json_decode(_PROCESS_PAYLOAD).struct
    return bronze.select(
        _ms_to_ts(doc.field("timestamp")).alias("ts"),
        *_place(),
        "ingest_batch_id",
        pl.col("asset_id").alias("machine_id"),
        doc.field("unitId").alias("unit_id"),
        doc.field("product").alias("product"),
        doc.field("materialLot").alias("material_lot"),
        doc.field("yield").alias("yield_pct"),
        doc.field("passed").alias("passed"),
        *_src(bronze),
    ).with_columns(pl.col("ts").dt.date().alias("date"))


def type_process_parameters(bronze: pl.DataFrame) -> pl.DataFrame:
    """Parameters arrive as a JSON object whose names come from the plant: go long form."""
    if bronze.height == 0:
        return _with_src_empty(table("silver.process_parameters"))
    base = bronze.select(
        pl.col("payload").str.json_path_match("$.unitId").alias("unit_id"),
        _ms_to_ts(pl.col("payload").str.json_path_match("$.timestamp").cast(pl.Int64)).alias("ts"),
        pl.col("payload").str.json_path_match("$.parameters").alias("_params"),
        *_place(),
        "ingest_batch_id",
        *_src(bronze),
    )
    base = base.filter(pl.col("_params").is_not_null())  # a unit may carry no parameters
    if base.height == 0:
        return _with_src_empty(table("silver.process_parameters"))
    params = base.get_column("_params").str.json_decode(infer_schema_length=None)
    wide = base.drop("_params").with_columns(params.alias("_params")).unnest("_params")
    id_columns = ["unit_id", "ts", *PLACE, "ingest_batch_id", *SRC_COLUMNS]
    return (
        wide.unpivot(index=id_columns, variable_name="name", value_name="value")
        .filter(pl.col("value").is_not_null())  # a unit reports only the parameters it has
        .with_columns(pl.col("value").cast(pl.Float64), pl.col("ts").dt.date().alias("date"))
    )


_IMAGE_PAYLOAD = pl.Struct(
    {
        "timestamp": pl.Int64,
        "imageId": pl.String,
        "unitId": pl.String,
        "width": pl.Int32,
        "height": pl.Int32,
        "data": pl.String,
        "label": pl.String,
    }
)


def type_inspection_images(bronze: pl.DataFrame) -> pl.DataFrame:
    doc = pl.col("payload").str.json_decode(_IMAGE_PAYLOAD).struct
    return bronze.select(
        _ms_to_ts(doc.field("timestamp")).alias("ts"),
        *_place(),
        "ingest_batch_id",
        pl.col("asset_id").alias("camera_id"),
        doc.field("imageId").alias("image_id"),
        doc.field("unitId").alias("unit_id"),
        doc.field("width").alias("width"),
        doc.field("height").alias("height"),
        doc.field("label").alias("label"),
        doc.field("data").str.decode("base64").alias("png"),
        *_src(bronze),
    ).with_columns(pl.col("ts").dt.date().alias("date"))


_LOG = pl.Struct({"level": pl.String, "message": pl.String})
_TELEMETRY_PAYLOAD = pl.Struct(
    {
        "timestamp": pl.Int64,
        "status": pl.String,
        "firmware": pl.String,
        "bundleId": pl.String,
        "cpuPct": pl.Float64,
        "memPct": pl.Float64,
        "tempC": pl.Float64,
        "uptimeS": pl.Float64,
        "logs": pl.List(_LOG),
    }
)


def _count_level(logs: pl.Expr, level: str) -> pl.Expr:
    hits = logs.list.eval((pl.element().struct.field("level") == level).cast(pl.Int32)).list.sum()
    return hits.fill_null(0).cast(pl.Int32)


def _log_text(logs: pl.Expr) -> pl.Expr:
    # "LEVEL message" lines: what a log-template miner reads (ml.features.edge_telemetry)
    lines = logs.list.eval(pl.concat_str(pl.element().struct.field("level"), pl.lit(" "),
                                         pl.element().struct.field("message")))
    return lines.list.join("\n")


def type_edge_telemetry(bronze: pl.DataFrame) -> pl.DataFrame:
    doc = pl.col("payload").str.json_decode(_TELEMETRY_PAYLOAD).struct
    return bronze.select(
        _ms_to_ts(doc.field("timestamp")).alias("ts"),
        *_place(),
        "ingest_batch_id",
        pl.col("asset_id").alias("edge_id"),
        doc.field("status").alias("status"),
        doc.field("firmware").alias("firmware"),
        doc.field("bundleId").alias("bundle_id"),
        doc.field("cpuPct").alias("cpu_pct"),
        doc.field("memPct").alias("mem_pct"),
        doc.field("tempC").alias("temp_c"),
        doc.field("uptimeS").alias("uptime_s"),
        _count_level(doc.field("logs"), "WARNING").alias("log_warnings"),
        _count_level(doc.field("logs"), "ERROR").alias("log_errors"),
        _log_text(doc.field("logs")).alias("log_text"),
        *_src(bronze),
    ).with_columns(pl.col("ts").dt.date().alias("date"))


_PREDICTION_PAYLOAD = pl.Struct(
    {
        "timestamp": pl.Int64,
        "bundleId": pl.String,
        "model": pl.String,
        "sourceId": pl.String,
        "score": pl.Float64,
        "threshold": pl.Float64,
        "latencyMs": pl.Float64,
    }
)


def type_edge_predictions(bronze: pl.DataFrame) -> pl.DataFrame:
    doc = pl.col("payload").str.json_decode(_PREDICTION_PAYLOAD).struct
    return bronze.select(
        _ms_to_ts(doc.field("timestamp")).alias("ts"),
        *_place(),
        "ingest_batch_id",
        pl.col("asset_id").alias("edge_id"),
        doc.field("bundleId").alias("bundle_id"),
        doc.field("model").alias("model"),
        doc.field("sourceId").alias("source_id"),
        # value may be a label, a number or a flag: keep its JSON text
        pl.col("payload").str.json_path_match("$.value").alias("value"),
        doc.field("score").alias("score"),
        doc.field("threshold").alias("threshold"),
        doc.field("latencyMs").alias("latency_ms"),
        *_src(bronze),
    ).with_columns(pl.col("ts").dt.date().alias("date"))


_FEEDBACK_PAYLOAD = pl.Struct(
    {
        "timestamp": pl.Int64,
        "sourceId": pl.String,
        "model": pl.String,
        "bundleId": pl.String,
        "verdict": pl.String,
        "operatorId": pl.String,
        "comment": pl.String,
    }
)


def type_labels(bronze: pl.DataFrame) -> pl.DataFrame:
    """Operator verdicts; the judged edge is the topic's asset, as for its predictions."""
    doc = pl.col("payload").str.json_decode(_FEEDBACK_PAYLOAD).struct
    return bronze.select(
        _ms_to_ts(doc.field("timestamp")).alias("ts"),
        *_place(),
        "ingest_batch_id",
        pl.col("asset_id").alias("edge_id"),
        doc.field("model").alias("model"),
        doc.field("sourceId").alias("source_id"),
        doc.field("bundleId").alias("bundle_id"),
        doc.field("verdict").alias("verdict"),
        doc.field("operatorId").alias("operator_id"),
        doc.field("comment").alias("comment"),
        *_src(bronze),
    ).with_columns(pl.col("ts").dt.date().alias("date"))


_BOXES_PAYLOAD = pl.Struct(
    {"timestamp": pl.Int64, "imageId": pl.String, "format": pl.String, "boxes": pl.String}
)


def type_image_boxes(bronze: pl.DataFrame) -> pl.DataFrame:
    """Imported part boxes (``mfg_assets.lake.import_boxes``): one row per image."""
    doc = pl.col("payload").str.json_decode(_BOXES_PAYLOAD).struct
    return bronze.select(
        _ms_to_ts(doc.field("timestamp")).alias("ts"),
        *_place(),
        "ingest_batch_id",
        pl.col("asset_id").alias("camera_id"),
        doc.field("imageId").alias("image_id"),
        doc.field("boxes").alias("boxes"),
        doc.field("format").alias("box_format"),
        *_src(bronze),
    ).with_columns(pl.col("ts").dt.date().alias("date"))


TYPERS: dict[str, tuple[str, Callable[[pl.DataFrame], pl.DataFrame]]] = {
    "silver.sensor_readings": ("bronze.sensor_readings", type_sensor_readings),
    "silver.process_runs": ("bronze.process_runs", type_process_runs),
    "silver.process_parameters": ("bronze.process_runs", type_process_parameters),
    "silver.inspection_images": ("bronze.inspection_images", type_inspection_images),
    "silver.edge_telemetry": ("bronze.edge_telemetry", type_edge_telemetry),
    "silver.edge_predictions": ("bronze.edge_predictions", type_edge_predictions),
    "silver.labels": ("bronze.feedback", type_labels),
    "silver.image_boxes": ("bronze.image_boxes", type_image_boxes),
}


def _with_src_empty(spec: TableSpec) -> pl.DataFrame:
    frame = spec.empty()
    return frame.with_columns(
        pl.lit(None, pl.String).alias("_src_message_id"),
        pl.lit(None, pl.String).alias("_src_topic"),
        pl.lit(None, pl.String).alias("_src_payload"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("_src_received_at"),
    )


def refine(
    spec: TableSpec,
    typed: pl.DataFrame,
    run_id: str,
    partition_key: str | None = None,
    window: PlausibleWindow = DEFAULT_WINDOW,
) -> RefineResult:
    """Validate typed rows against the silver schema, quarantine failures, implausible
    timestamps and key conflicts, and drop exact redeliveries."""
    columns = list(spec.polars_schema)
    typed = typed.with_columns(
        pl.col(name).cast(dtype) for name, dtype in spec.polars_schema.items()
    ).with_row_index("_row")
    reasons = _row_failures(spec, typed.select(columns))
    failed = typed.join(reasons, on="_row", how="inner")
    passed = typed.join(reasons, on="_row", how="anti")
    implausible = _implausible_times(spec, passed, window)
    passed = passed.join(implausible.select("_row"), on="_row", how="anti")
    ordered = passed.sort(["_src_received_at", "_src_message_id", "_row"])
    kept, conflicts = split_conflicts(spec, ordered)
    deduped = kept.unique(subset=list(spec.key), keep="first", maintain_order=True)
    rejected = pl.concat(
        [
            _quarantine_rows(spec, failed, run_id, partition_key, "schema"),
            _quarantine_rows(spec, implausible, run_id, partition_key, "implausible_time"),
            _quarantine_rows(spec, conflicts, run_id, partition_key, "conflict"),
        ]
    )
    return RefineResult(
        valid=deduped.select(columns),
        rejected=rejected,
        duplicates=kept.height - deduped.height,
    )


def value_columns(spec: TableSpec) -> list[str]:
    """What a row says (every column but its key and its lineage)."""
    return [c for c in spec.polars_schema if c not in spec.key and c not in LINEAGE]


def _fingerprint(columns: list[str]) -> pl.Expr:
    return pl.struct(columns).hash(seed=7) if columns else pl.lit(0, pl.UInt64)


def split_conflicts(spec: TableSpec, ordered: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows to keep, conflicting rows with a ``reason``) for rows sorted by delivery.

    Per key, the first delivered row wins; a later row with the same values is a
    redelivery (kept here, dropped by the dedupe); a later row with other values is a
    conflict, quarantined with the kept and the refused values side by side.
    """
    key = list(spec.key)
    values = value_columns(spec)
    marked = ordered.with_columns(_fingerprint(values).alias("_fp")).with_columns(
        pl.col("_fp").first().over(key, mapping_strategy="group_to_rows").alias("_first_fp"),
        _value_text(values).alias("_values"),
    )
    marked = marked.with_columns(
        pl.col("_values").first().over(key).alias("_first_values"),
        pl.col("_src_message_id").first().over(key).alias("_first_msg"),
    )
    clash = pl.col("_fp") != pl.col("_first_fp")
    helpers = ["_fp", "_first_fp", "_values", "_first_values", "_first_msg"]
    conflicts = marked.filter(clash).with_columns(
        pl.format(
            "conflict on key ({}) = ({}): kept {} (message {}), refused {} (message {})",
            pl.lit(", ".join(key)),
            pl.concat_str([pl.col(c).cast(pl.String).fill_null("null") for c in key],
                          separator=", "),
            pl.col("_first_values"),
            pl.col("_first_msg").fill_null("?"),
            pl.col("_values"),
            pl.col("_src_message_id").fill_null("?"),
        ).alias("reason")
    )
    return marked.filter(~clash).drop(helpers), conflicts.drop(helpers)


def _value_text(columns: list[str]) -> pl.Expr:
    """The row's values as short ``name=value`` text (binary columns as size and hash)."""
    if not columns:
        return pl.lit("")
    parts = []
    for name in columns:
        parts.append(pl.lit(f"{name}="))
        parts.append(pl.col(name).cast(pl.String, strict=False).fill_null("null")
                     if name != "png" else
                     pl.format("<{} bytes #{}>", pl.col(name).bin.size(),
                               pl.col(name).hash(seed=7) % 1_000_000))
        parts.append(pl.lit(" "))
    return pl.concat_str(parts[:-1])


def _implausible_times(
    spec: TableSpec, frame: pl.DataFrame, window: PlausibleWindow
) -> pl.DataFrame:
    """Rows whose ``ts`` lies outside the plausible window, with the reason."""
    if "ts" not in spec.polars_schema:
        return frame.clear().with_columns(pl.lit(None, pl.String).alias("reason"))
    low, high = window.bounds()
    outside = (pl.col("ts") < low) | (pl.col("ts") > high)
    return frame.filter(outside).with_columns(
        pl.format(
            "ts {} outside the plausible window {}",
            pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ"),
            pl.lit(window.describe()),
        ).alias("reason")
    )


def _row_failures(spec: TableSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """Row index -> reason for every row the pandera schema refuses (all reasons joined)."""
    empty = pl.DataFrame(schema={"_row": pl.UInt32, "reason": pl.String})
    try:
        spec.schema.validate(frame, lazy=True)
        return empty
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    per_row = cases.filter(pl.col("index").is_not_null())
    if per_row.height < cases.height:
        # A table-level failure (wrong column type, missing column) is a bug in the typer,
        # not bad data: surface it loudly instead of quarantining every row.
        table_level = cases.filter(pl.col("index").is_null())
        raise ValueError(f"{spec.qualified_name} schema failure: {table_level.to_dicts()}")
    if per_row.height == 0:
        return empty
    reason = pl.format(
        "{} {} (got {})",
        pl.col("column").fill_null("row"),
        pl.col("check"),
        pl.col("failure_case").fill_null("null"),
    )
    return (
        per_row.with_columns(reason.alias("reason"), pl.col("index").cast(pl.UInt32).alias("_row"))
        .group_by("_row")
        .agg(pl.col("reason").unique().sort().str.join("; "))
    )


def _quarantine_rows(
    spec: TableSpec, failed: pl.DataFrame, batch: str, partition_key: str | None, code: str
) -> pl.DataFrame:
    q = table(f"{spec.layer}.quarantine")
    if failed.height == 0:
        return q.empty()
    now = datetime.now(UTC)
    return failed.select(
        pl.concat_str(
            [
                pl.lit(spec.qualified_name),
                pl.col("_src_message_id"),
                pl.col("_row").cast(pl.String),
            ],
            separator=":",
        )
        .map_elements(_short_hash, return_dtype=pl.String)
        .alias("quarantine_id"),
        pl.lit(batch).alias("ingest_batch_id"),
        pl.lit(f"silver:{spec.name}").alias("source"),
        pl.col("_src_topic").alias("topic"),
        pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("received_at"),
        pl.lit(spec.qualified_name).alias("stage"),
        pl.lit(code).alias("reason_code"),
        pl.col("reason"),
        pl.col("_src_payload").alias("payload"),
        pl.lit(partition_key, pl.String).alias("partition_key"),
    )


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def type_fault_labels(ground_truth: pl.DataFrame) -> pl.DataFrame:
    """Fault intervals from ground-truth records (``kind == 'fault'``)."""
    record = (
        pl.col("record")
        .str.json_decode(
            pl.Struct(
                {
                    "fault_id": pl.String,
                    "machine_id": pl.String,
                    "fault_type": pl.String,
                    "onset_ms": pl.Int64,
                    "detectable_ms": pl.Int64,
                    "failure_ms": pl.Int64,
                    "end_ms": pl.Int64,
                }
            )
        )
        .struct
    )
    faults = ground_truth.filter(pl.col("kind") == "fault")
    return faults.select(
        record.field("fault_id").alias("fault_id"),
        record.field("machine_id").alias("machine_id"),
        record.field("fault_type").alias("fault_type"),
        _ms_to_ts(record.field("onset_ms")).alias("onset"),
        _ms_to_ts(record.field("detectable_ms")).alias("detectable"),
        _ms_to_ts(record.field("failure_ms")).alias("failure"),
        _ms_to_ts(record.field("end_ms")).alias("end"),
        "ingest_batch_id",
    ).unique(subset=["fault_id"], keep="first", maintain_order=True)


# -- one silver partition: bronze day in, silver day and its quarantine out ---------------


@dataclass(frozen=True)
class PartitionLoad:
    bronze_version: int | None  # the bronze table's version when the day was read
    bronze_messages: int
    result: RefineResult
    write: WriteResult
    written: pl.DataFrame  # the committed partition, read back: what the checks look at


def load_partition(lake: Lake, spec: TableSpec, bronze: TableSpec,
                   typer: Callable[[pl.DataFrame], pl.DataFrame], day: str,
                   run_id: str) -> PartitionLoad:
    """Type and refine one bronze day, replace the silver day and the day's quarantine rows
    of this table (idempotent: a re-run replaces both)."""
    bronze_version = lake.version(bronze)
    raw = lake.read_partition(bronze, day)
    result = refine(spec, typer(raw), run_id=run_id, partition_key=day)
    write = lake.overwrite_partition(spec, result.valid, day, run_id=run_id)
    lake.replace_where(table(SILVER_QUARANTINE), result.rejected,
                       f"stage = '{spec.qualified_name}' AND partition_key = '{day}'")
    return PartitionLoad(bronze_version, raw.height, result, write,
                         lake.read_partition(spec, day))


@dataclass(frozen=True)
class PartitionChecks:
    schema_errors: str  # "" when the schema holds
    duplicates: int  # rows sharing the registry key with another
    rejected: int
    share: float  # of the rows in, refused


def check_partition(spec: TableSpec, written: pl.DataFrame, rejected: int) -> PartitionChecks:
    """The figures the silver checks judge: schema, unique key, quarantined share."""
    duplicates = written.height - written.unique(subset=list(spec.key)).height
    total = written.height + rejected
    return PartitionChecks(schema_errors(spec, written), duplicates, rejected,
                           rejected / total if total else 0.0)
