"""Pandera (polars) schemas of every lakehouse table.

Bronze tables keep the validated payload as it arrived (JSON text) plus where it came
from; silver tables are typed, one row per business fact, and carry the ingest batch id
as lineage. The registry (:mod:`mfg_assets.lake.registry`) binds each schema to a table.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

UTC_TS = pl.Datetime("us", "UTC")
DEVICE_EVENT_TYPES = (
    "NBIRTH",
    "NDEATH",
    "DBIRTH",
    "DDEATH",
    "NCMD",
    "DCMD",
    "STATE",
    "REBIRTH_REQUEST",
)


class _Strict(pa.DataFrameModel):
    class Config:
        strict = True  # a column nobody declared is a bug, not data
        coerce = False


class BronzeMessage(_Strict):
    """One validated UNS message: provenance, ISA-95 place and the payload as JSON."""

    message_id: str = pa.Field(str_length={"min_value": 1})
    ingest_batch_id: str
    source: str
    topic: str
    channel: str
    received_at: UTC_TS
    event_time: UTC_TS
    event_date: pl.Date
    enterprise: str = pa.Field(nullable=True)
    site: str = pa.Field(nullable=True)
    area: str = pa.Field(nullable=True)
    line: str = pa.Field(nullable=True)
    cell: str = pa.Field(nullable=True)
    asset_id: str
    payload: str


class Quarantine(_Strict):
    """A message or row that was refused, with the reason: nothing is dropped silently."""

    quarantine_id: str
    ingest_batch_id: str
    source: str
    topic: str = pa.Field(nullable=True)
    received_at: UTC_TS
    stage: str
    reason_code: str
    reason: str
    payload: str = pa.Field(nullable=True)
    partition_key: str = pa.Field(nullable=True)  # the silver partition that refused the row


class IngestBatch(_Strict):
    """One committed ingest batch (a replay file or a gateway micro-batch)."""

    ingest_batch_id: str
    source: str
    file: str = pa.Field(nullable=True)
    file_sha256: str = pa.Field(nullable=True)
    committed_at: UTC_TS
    messages: pl.Int64 = pa.Field(ge=0)
    valid: pl.Int64 = pa.Field(ge=0)
    invalid: pl.Int64 = pa.Field(ge=0)


class ValidationResult(_Strict):
    """Contract compliance per channel and minute, one row per ingest batch (sum to query)."""

    minute: UTC_TS
    channel: str
    source: str
    ingest_batch_id: str
    received: pl.Int64 = pa.Field(ge=0)
    valid: pl.Int64 = pa.Field(ge=0)
    invalid: pl.Int64 = pa.Field(ge=0)
    top_errors: str  # JSON object: reason -> count, the five most frequent


class DeviceEvent(_Strict):
    """Sparkplug session events: births, deaths and rebirth requests per node/device."""

    message_id: str
    ingest_batch_id: str
    received_at: UTC_TS
    event_time: UTC_TS
    event_date: pl.Date
    group_id: str
    edge_node_id: str
    device_id: str = pa.Field(nullable=True)
    event_type: str = pa.Field(isin=list(DEVICE_EVENT_TYPES))
    detail: str


class GroundTruth(_Strict):
    """Simulator (or plant maintenance) ground truth records, raw JSON per record."""

    record_id: str
    ingest_batch_id: str
    kind: str
    record: str


class _SilverPlace(_Strict):
    ts: UTC_TS
    date: pl.Date
    enterprise: str = pa.Field(nullable=True)
    site: str = pa.Field(nullable=True)
    area: str = pa.Field(nullable=True)
    line: str = pa.Field(nullable=True)
    cell: str = pa.Field(nullable=True)
    ingest_batch_id: str


class SensorReading(_SilverPlace):
    machine_id: str = pa.Field(str_length={"min_value": 1})
    machine_type: str
    sensor: str = pa.Field(str_length={"min_value": 1})
    value: pl.Float64 = pa.Field(nullable=False)
    unit: str = pa.Field(nullable=True)

    @pa.dataframe_check
    @classmethod
    def finite_values(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("value").is_finite())


class ProcessRun(_SilverPlace):
    machine_id: str
    unit_id: str = pa.Field(str_length={"min_value": 1})
    product: str = pa.Field(nullable=True)
    material_lot: str = pa.Field(nullable=True)
    yield_pct: pl.Float64 = pa.Field(ge=0, le=100)
    passed: pl.Boolean


class ProcessParameter(_SilverPlace):
    unit_id: str
    name: str = pa.Field(str_length={"min_value": 1})
    value: pl.Float64


class InspectionImage(_SilverPlace):
    camera_id: str
    image_id: str = pa.Field(str_length={"min_value": 1})
    unit_id: str = pa.Field(nullable=True)
    width: pl.Int32 = pa.Field(ge=8)
    height: pl.Int32 = pa.Field(ge=8)
    label: str = pa.Field(nullable=True)
    png: pl.Binary


class ImageBoxes(_SilverPlace):
    """The part boxes of one image as a labeling tool exported them (``mfg import images
    --boxes``): ``[[class, x0, y0, x1, y1], ...]`` JSON in pixels."""

    camera_id: str
    image_id: str = pa.Field(str_length={"min_value": 1})
    boxes: str
    box_format: str = pa.Field(isin=["coco", "yolo"])


class EdgeTelemetry(_SilverPlace):
    edge_id: str
    status: str = pa.Field(isin=["online", "degraded", "offline"])
    firmware: str
    bundle_id: str = pa.Field(nullable=True)
    cpu_pct: pl.Float64 = pa.Field(nullable=True, ge=0, le=100)
    mem_pct: pl.Float64 = pa.Field(nullable=True, ge=0, le=100)
    uptime_s: pl.Float64 = pa.Field(nullable=True, ge=0)
    log_warnings: pl.Int32 = pa.Field(ge=0)
    log_errors: pl.Int32 = pa.Field(ge=0)
    temp_c: pl.Float64 = pa.Field(nullable=True, ge=-40, le=150)
    log_text: str = pa.Field(nullable=True)  # "LEVEL message" lines, newline-separated


class EdgePrediction(_SilverPlace):
    edge_id: str
    bundle_id: str
    model: str
    source_id: str
    value: str = pa.Field(nullable=True)
    score: pl.Float64
    threshold: pl.Float64 = pa.Field(nullable=True)
    latency_ms: pl.Float64 = pa.Field(nullable=True, ge=0)


class Label(_SilverPlace):
    """One verdict on one prediction: ``ts`` is when it was given, the rest says on what."""

    edge_id: str
    model: str
    source_id: str = pa.Field(str_length={"min_value": 1})
    bundle_id: str
    verdict: str = pa.Field(str_length={"min_value": 1, "max_value": 64})
    operator_id: str = pa.Field(str_length={"min_value": 1})
    comment: str = pa.Field(nullable=True)


class FaultLabel(_Strict):
    fault_id: str
    machine_id: str
    fault_type: str
    onset: UTC_TS
    # first symptom in the sensors (simulator: a fifth of the full effect); null if unknown
    detectable: UTC_TS = pa.Field(nullable=True)
    failure: UTC_TS = pa.Field(nullable=True)
    end: UTC_TS
    ingest_batch_id: str


# -- features: rebuilt from silver by mfg_assets.ml.features --------------------------------
# Wide feature columns are named from the data (sensors, process parameters), so they are
# declared as regex columns: any name of that shape, of that type.

SENSOR_STATS = (
    "mean",
    "std",
    "min",
    "max",
    "slope",
    "rms_diff",
    "fft_low",
    "fft_mid",
    "fft_high",
    "fft_peak",
)
SENSOR_FEATURE_COLUMN = rf"^[^_].*__({'|'.join(SENSOR_STATS)})$"
PARAM_COLUMN = r"^param__.+$"
EDGE_FEATURE_COLUMN = r"^[a-z]+__[a-z0-9_]+$"
IMAGE_SPLITS = ("train", "validation", "test")


class SensorWindow(_Strict):
    """Per machine and fixed window: statistics of every sensor, and the fault label."""

    machine_id: str = pa.Field(str_length={"min_value": 1})
    machine_type: str
    window_start: UTC_TS
    window_end: UTC_TS
    n_samples: pl.Int64 = pa.Field(ge=1)
    is_fault: pl.Boolean = pa.Field(nullable=True)  # null: no ground truth available
    sensor_stats: pl.Float64 = pa.Field(alias=SENSOR_FEATURE_COLUMN, regex=True, nullable=True)

    @pa.dataframe_check
    @classmethod
    def window_ends_after_start(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("window_end") > pl.col("window_start"))


class ProcessUnit(_Strict):
    """One produced unit: its process parameters (``param__<name>``) and measured yield."""

    unit_id: str = pa.Field(str_length={"min_value": 1})
    machine_id: str
    product: str = pa.Field(nullable=True)
    material_lot: str = pa.Field(nullable=True)
    ts: UTC_TS
    yield_pct: pl.Float64 = pa.Field(ge=0, le=100)
    passed: pl.Boolean
    parameters: pl.Float64 = pa.Field(alias=PARAM_COLUMN, regex=True, nullable=True)


class ImageSample(_Strict):
    """An inspection image with its label and its time-ordered train/validation/test split."""

    image_id: str = pa.Field(str_length={"min_value": 1})
    camera_id: str
    unit_id: str = pa.Field(nullable=True)
    ts: UTC_TS
    width: pl.Int32 = pa.Field(ge=8)
    height: pl.Int32 = pa.Field(ge=8)
    label: str = pa.Field(nullable=True)
    png: pl.Binary
    split: str = pa.Field(isin=list(IMAGE_SPLITS))


class AssemblySample(_Strict):
    """An assembly image with its part boxes (``[[class, x0, y0, x1, y1], ...]`` JSON, pixels),
    the empty slots where known (same shape; null: not annotated) and its split."""

    image_id: str = pa.Field(str_length={"min_value": 1})
    camera_id: str
    unit_id: str = pa.Field(nullable=True)
    ts: UTC_TS
    width: pl.Int32 = pa.Field(ge=8)
    height: pl.Int32 = pa.Field(ge=8)
    label: str = pa.Field(nullable=True)
    png: pl.Binary
    boxes: str
    missing: str = pa.Field(nullable=True)
    split: str = pa.Field(isin=list(IMAGE_SPLITS))


class EdgeWindow(_Strict):
    """Per edge device and fixed window: heartbeats, load, log problems, firmware."""

    edge_id: str
    window_start: UTC_TS
    window_end: UTC_TS
    heartbeats: pl.Int64 = pa.Field(ge=1)
    cpu_mean: pl.Float64 = pa.Field(nullable=True, ge=0, le=100)
    cpu_max: pl.Float64 = pa.Field(nullable=True, ge=0, le=100)
    mem_mean: pl.Float64 = pa.Field(nullable=True, ge=0, le=100)
    mem_max: pl.Float64 = pa.Field(nullable=True, ge=0, le=100)
    warnings: pl.Int64 = pa.Field(ge=0)
    errors: pl.Int64 = pa.Field(ge=0)
    degraded: pl.Int64 = pa.Field(ge=0)
    firmware: str
    bundle_id: str = pa.Field(nullable=True)
    # ground truth (null: no labels): hours from the window's end to the device's next
    # failure (null: none ahead), and whether the device failed within the window or is down
    hours_to_failure: pl.Float64 = pa.Field(nullable=True, ge=0)
    failed: pl.Boolean = pa.Field(nullable=True)
    # health features for the edge_health model: <signal>__<stat> (trends, log templates)
    health: pl.Float64 = pa.Field(alias=EDGE_FEATURE_COLUMN, regex=True, nullable=True)


# -- edge: bundles and rollouts (mfg_assets.edge) --------------------------------------------

ROLLOUT_STATES = ("canary", "awaiting_approval", "promoted", "rolled_back")


class EdgeBundle(_Strict):
    """One signed per-edge bundle: what it holds and where it comes from."""

    bundle_id: str = pa.Field(str_length={"min_value": 1, "max_value": 128})
    edge_id: str
    model: str
    model_version: str
    precision: str = pa.Field(isin=["fp32", "int8"])
    threshold: pl.Float64
    lineage: str  # JSON: MLflow run, Delta versions of the tables the model trained on
    store_uri: str
    created_at: UTC_TS


class EdgeRollout(_Strict):
    """The state of one rollout (a row rewritten on every transition)."""

    rollout_id: str
    model: str
    candidate_version: str
    state: str = pa.Field(isin=list(ROLLOUT_STATES))
    canary_edges: str  # JSON list
    control_edges: str  # JSON list
    candidate_bundles: str  # JSON: edge id -> bundle id
    baseline_bundles: str  # JSON: edge id -> bundle id before the rollout
    require_approval: pl.Boolean
    approved_by: str = pa.Field(nullable=True)
    decision: str = pa.Field(nullable=True, isin=["promote", "rollback", "wait"])
    reason: str
    metrics: str  # JSON: canary and control figures of the last comparison
    started_at: UTC_TS
    updated_at: UTC_TS


# -- monitoring: views for people running the plant -------------------------------------------

STAT_SCOPES = ("line", "edge")


class InspectionStat(_Strict):
    """Per day, line or edge, and model: defect rate, accuracy against QA labels, latency."""

    date: pl.Date
    scope: str = pa.Field(isin=list(STAT_SCOPES))
    line: str = pa.Field(nullable=True)
    edge_id: str = pa.Field(nullable=True)  # null for a line row
    model: str
    predictions: pl.Int64 = pa.Field(ge=0)
    defects: pl.Int64 = pa.Field(ge=0)  # predictions that are not a normal value
    defect_rate: pl.Float64 = pa.Field(nullable=True, ge=0, le=1)
    labelled: pl.Int64 = pa.Field(ge=0)
    accuracy: pl.Float64 = pa.Field(nullable=True, ge=0, le=1)
    latency_p50_ms: pl.Float64 = pa.Field(nullable=True, ge=0)
    latency_p95_ms: pl.Float64 = pa.Field(nullable=True, ge=0)
    latency_p99_ms: pl.Float64 = pa.Field(nullable=True, ge=0)
    rollout_stage: str  # "none", or the state (and role) of the latest rollout it is part of
    computed_at: UTC_TS


class CostItem(_Strict):
    """One line of the projected monthly bill (recomputed from materialization metadata)."""

    item: str
    category: str
    quantity: pl.Float64 = pa.Field(ge=0)
    unit: str
    unit_price_usd: pl.Float64 = pa.Field(ge=0)
    monthly_usd: pl.Float64 = pa.Field(ge=0)
    basis: str
    computed_at: UTC_TS


# -- monitoring: drift (mfg_assets.ml.drift) -------------------------------------------------

DRIFT_KINDS = ("input", "prediction", "performance")


class DriftRow(_Strict):
    """One feature of one model family in one drift evaluation, with the family's verdict."""

    computed_at: UTC_TS
    family: str
    kind: str = pa.Field(isin=list(DRIFT_KINDS))
    feature: str
    segment: str  # machine, camera or edge; "all" when not segmented
    n_reference: pl.Int64 = pa.Field(ge=0)
    n_recent: pl.Int64 = pa.Field(ge=0)
    psi: pl.Float64 = pa.Field(nullable=True)
    ks_stat: pl.Float64 = pa.Field(nullable=True)
    ks_pvalue: pl.Float64 = pa.Field(nullable=True)
    wasserstein: pl.Float64 = pa.Field(nullable=True)
    mean_reference: pl.Float64 = pa.Field(nullable=True)
    mean_recent: pl.Float64 = pa.Field(nullable=True)
    drifted: pl.Boolean
    reference_start: UTC_TS = pa.Field(nullable=True)
    reference_end: UTC_TS = pa.Field(nullable=True)
    recent_start: UTC_TS = pa.Field(nullable=True)
    recent_end: UTC_TS = pa.Field(nullable=True)
    reference_source: str  # "training <table>@<version>" or "oldest window"
    family_drifted: pl.Boolean
    reason: str
    evidence_id: str
    # the rows that carry the family's declaration (a persisted segment's drifted inputs,
    # or drifted predictions/performance); null on rows written before the column existed
    declared: pl.Boolean = pa.Field(nullable=True)


class LakeMaintenance(_Strict):
    """One table's nightly maintenance: files and bytes before/after, what was vacuumed."""

    run_at: UTC_TS
    table: str
    files_before: pl.Int64 = pa.Field(ge=0)
    files_after: pl.Int64 = pa.Field(ge=0)
    bytes_before: pl.Int64 = pa.Field(ge=0)
    bytes_after: pl.Int64 = pa.Field(ge=0)
    files_added: pl.Int64 = pa.Field(ge=0)
    files_removed: pl.Int64 = pa.Field(ge=0)
    vacuumed: pl.Int64 = pa.Field(ge=0)
    zordered_by: str
    seconds: pl.Float64 = pa.Field(ge=0)


# -- predictions: feature rows scored again by a chosen model version (fleet/batch.py) -------


class BatchPrediction(_Strict):
    """One feature row scored by a model version on the platform, beside what the edge said.

    ``source_id`` is the id an edge publishes for the same input (the image id, or
    ``<machine>/<window start ms>``), so the edge's columns come from silver.edge_predictions.
    """

    date: pl.Date
    ts: UTC_TS  # the input's time (image taken, window start)
    source_id: str = pa.Field(str_length={"min_value": 1})
    asset_id: str  # camera or machine
    model_name: str  # registered model
    model_version: str
    score: pl.Float64  # higher = more abnormal, as on the edge
    threshold: pl.Float64 = pa.Field(nullable=True)
    decision: str  # the edge's value text: "true"/"false" or a class name
    truth: str = pa.Field(nullable=True)  # label or fault flag where the feature row has one
    edge_id: str = pa.Field(nullable=True)
    bundle_id: str = pa.Field(nullable=True)  # the bundle that scored it on the edge
    edge_score: pl.Float64 = pa.Field(nullable=True)
    edge_decision: str = pa.Field(nullable=True)
    scored_at: UTC_TS
