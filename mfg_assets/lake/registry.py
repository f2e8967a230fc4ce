"""The table registry: every lakehouse table is declared here, once.

Nobody else spells a table path: code asks the registry for a :class:`TableSpec` and the
Delta layer (:mod:`mfg_assets.lake.delta`) turns it into a location under the lake root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from mfg_assets.lake import schemas
from mfg_assets.lake.names import (
    BRONZE_DEVICE_EVENTS,
    BRONZE_EDGE_PREDICTIONS,
    BRONZE_EDGE_TELEMETRY,
    BRONZE_FEEDBACK,
    BRONZE_GROUND_TRUTH,
    BRONZE_IMAGE_BOXES,
    BRONZE_INGEST_BATCHES,
    BRONZE_INSPECTION_IMAGES,
    BRONZE_PROCESS_RUNS,
    BRONZE_QUARANTINE,
    BRONZE_SENSOR_READINGS,
    BRONZE_VALIDATION_RESULTS,
    EDGE_BUNDLES,
    EDGE_ROLLOUTS,
    FEATURES_ASSEMBLY_IMAGES,
    FEATURES_EDGE_TELEMETRY,
    FEATURES_IMAGE_DATASET,
    FEATURES_PROCESS_UNITS,
    FEATURES_SENSOR_WINDOWS,
    MONITORING_COST,
    MONITORING_DRIFT,
    MONITORING_INSPECTION_STATS,
    MONITORING_LAKE_MAINTENANCE,
    PREDICTIONS_PART_DETECTION,
    PREDICTIONS_SENSOR_ANOMALY,
    PREDICTIONS_VISION_DEFECT,
    SILVER_EDGE_PREDICTIONS,
    SILVER_EDGE_TELEMETRY,
    SILVER_FAULT_LABELS,
    SILVER_IMAGE_BOXES,
    SILVER_INSPECTION_IMAGES,
    SILVER_LABELS,
    SILVER_PROCESS_PARAMETERS,
    SILVER_PROCESS_RUNS,
    SILVER_QUARANTINE,
    SILVER_SENSOR_READINGS,
)


@dataclass(frozen=True)
class TableSpec:
    layer: str
    name: str
    schema: type[pa.DataFrameModel]
    key: tuple[str, ...]
    partition_by: str | None
    description: str

    @property
    def qualified_name(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def asset_key_path(self) -> list[str]:
        return [self.layer, self.name]

    @property
    def polars_schema(self) -> pl.Schema:
        """The fixed columns; wide tables add columns matching :attr:`pattern_columns`."""
        columns = self.schema.to_schema().columns
        return pl.Schema(
            {name: c.dtype.type for name, c in columns.items() if not getattr(c, "regex", False)}
        )

    @property
    def pattern_columns(self) -> list[tuple[re.Pattern[str], pl.DataType]]:
        """Regex-declared columns (names from the data, e.g. ``<sensor>__mean``) and type."""
        columns = self.schema.to_schema().columns
        return [
            (re.compile(name), c.dtype.type)
            for name, c in columns.items()
            if getattr(c, "regex", False)
        ]

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.polars_schema)


# An asset id (machine, camera, edge) or a unit id is only unique within its place in the
# UNS (enterprise/site/area/line/cell): every silver key carries the whole place, so rows
# from two sites never collide. Null place levels compare equal (polars unique, and the
# importer's anti-join uses nulls_equal).
PLACE_KEY = ("enterprise", "site", "area", "line", "cell")


def _spec(
    qualified_name: str,
    schema: type[pa.DataFrameModel],
    key: tuple[str, ...],
    partition_by: str | None,
    description: str,
) -> TableSpec:
    """A table declared by its constant from :mod:`mfg_assets.lake.names` (spelled once)."""
    layer, name = qualified_name.split(".")
    return TableSpec(layer, name, schema, key, partition_by, description)


def _bronze(qualified_name: str, description: str) -> TableSpec:
    return _spec(
        qualified_name, schemas.BronzeMessage, ("message_id",), "event_date", description
    )


TABLES: tuple[TableSpec, ...] = (
    _bronze(
        BRONZE_SENSOR_READINGS, "Validated sensor messages (JSON and Sparkplug B), raw payload."
    ),
    _bronze(BRONZE_PROCESS_RUNS, "Validated process-run messages, one per produced unit."),
    _bronze(BRONZE_INSPECTION_IMAGES, "Validated inspection image messages (base64 PNG payloads)."),
    _bronze(BRONZE_IMAGE_BOXES, "Imported part boxes per image (`mfg import images --boxes`)."),
    _bronze(BRONZE_EDGE_TELEMETRY, "Validated edge heartbeats/telemetry."),
    _bronze(BRONZE_EDGE_PREDICTIONS, "Validated predictions published by edge runtimes."),
    _bronze(BRONZE_FEEDBACK, "Operator verdicts on edge predictions (line HMI or `mfg label`)."),
    _spec(
        BRONZE_DEVICE_EVENTS,
        schemas.DeviceEvent,
        ("message_id", "event_type"),
        "event_date",
        "Sparkplug B births, deaths and rebirth requests.",
    ),
    _spec(
        BRONZE_QUARANTINE,
        schemas.Quarantine,
        ("quarantine_id",),
        None,
        "Messages refused at ingest (unknown topic, bad payload, schema), with the reason.",
    ),
    _spec(
        BRONZE_INGEST_BATCHES,
        schemas.IngestBatch,
        ("ingest_batch_id",),
        None,
        "One row per committed ingest batch: replay file or gateway micro-batch.",
    ),
    _spec(
        BRONZE_VALIDATION_RESULTS,
        schemas.ValidationResult,
        ("minute", "channel", "ingest_batch_id"),
        None,
        "Contract compliance: received/valid/invalid and top errors per channel and minute.",
    ),
    _spec(
        BRONZE_GROUND_TRUTH,
        schemas.GroundTruth,
        ("record_id",),
        None,
        "Ground-truth records (injected faults, drift scenarios) as raw JSON.",
    ),
    _spec(
        SILVER_SENSOR_READINGS,
        schemas.SensorReading,
        (*PLACE_KEY, "machine_id", "sensor", "ts"),
        "date",
        "Typed sensor readings, long form: one row per machine, sensor and time.",
    ),
    _spec(
        SILVER_PROCESS_RUNS,
        schemas.ProcessRun,
        (*PLACE_KEY, "unit_id"),
        "date",
        "Typed process runs: one row per produced unit with its measured yield.",
    ),
    _spec(
        SILVER_PROCESS_PARAMETERS,
        schemas.ProcessParameter,
        (*PLACE_KEY, "unit_id", "name"),
        "date",
        "Process parameters per unit, long form (names come from the data).",
    ),
    _spec(
        SILVER_INSPECTION_IMAGES,
        schemas.InspectionImage,
        (*PLACE_KEY, "image_id"),
        "date",
        "Decoded inspection images (PNG bytes) with QA labels where given.",
    ),
    _spec(
        SILVER_IMAGE_BOXES,
        schemas.ImageBoxes,
        (*PLACE_KEY, "image_id"),
        "date",
        "Imported part boxes per inspection image (COCO JSON or YOLO txt), in pixels.",
    ),
    _spec(
        SILVER_EDGE_TELEMETRY,
        schemas.EdgeTelemetry,
        (*PLACE_KEY, "edge_id", "ts"),
        "date",
        "Typed edge heartbeats with health figures and log-level counts.",
    ),
    _spec(
        SILVER_EDGE_PREDICTIONS,
        schemas.EdgePrediction,
        (*PLACE_KEY, "edge_id", "model", "source_id"),
        "date",
        "Typed edge predictions with the bundle that made each.",
    ),
    _spec(
        SILVER_LABELS,
        schemas.Label,
        # one row per verdict: an operator who changes their mind adds a later row, and the
        # latest verdict on a prediction wins (mfg_assets.labeling.store.current_labels)
        (*PLACE_KEY, "edge_id", "model", "source_id", "operator_id", "ts"),
        "date",
        "Operator verdicts on edge predictions (confirm, reject or a class label), with the "
        "judged prediction (edge, model, source id), its bundle, who and when.",
    ),
    _spec(
        SILVER_QUARANTINE,
        schemas.Quarantine,
        ("quarantine_id",),
        None,
        "Rows refused by silver typing or schema checks, with the reason.",
    ),
    _spec(
        SILVER_FAULT_LABELS,
        schemas.FaultLabel,
        ("fault_id",),
        None,
        "Ground-truth fault intervals (onset, failure, end) per machine.",
    ),
    _spec(
        FEATURES_SENSOR_WINDOWS,
        schemas.SensorWindow,
        ("machine_id", "window_start"),
        None,
        "Per machine and 10-minute window: statistics of every sensor (wide, "
        "<sensor>__<stat>) and whether a ground-truth fault overlaps the window.",
    ),
    _spec(
        FEATURES_PROCESS_UNITS,
        schemas.ProcessUnit,
        ("unit_id",),
        None,
        "One row per produced unit: process parameters (param__<name>), yield and pass/fail.",
    ),
    _spec(
        FEATURES_IMAGE_DATASET,
        schemas.ImageSample,
        ("image_id",),
        None,
        "Labelled inspection images with a time-ordered train/validation/test split per camera.",
    ),
    _spec(
        FEATURES_ASSEMBLY_IMAGES,
        schemas.AssemblySample,
        ("image_id",),
        None,
        "Assembly images with part boxes and empty slots, time-ordered split per camera. "
        "Input of the part detection model.",
    ),
    _spec(
        FEATURES_EDGE_TELEMETRY,
        schemas.EdgeWindow,
        ("edge_id", "window_start"),
        None,
        "Per edge device and window: heartbeats, CPU/memory, warnings/errors, firmware.",
    ),
    _spec(
        EDGE_BUNDLES,
        schemas.EdgeBundle,
        ("bundle_id",),
        None,
        "Signed per-edge bundles: model version, precision, threshold, lineage, store.",
    ),
    _spec(
        EDGE_ROLLOUTS,
        schemas.EdgeRollout,
        ("rollout_id",),
        None,
        "Rollout state per candidate model: canary/control edges, decision and reason.",
    ),
    _spec(
        MONITORING_INSPECTION_STATS,
        schemas.InspectionStat,
        ("date", "scope", "line", "edge_id", "model"),
        None,
        "Per day, line and edge: defect rate, accuracy against QA labels, latency "
        "p50/p95/p99 and rollout stage of the edge predictions (rebuilt from silver).",
    ),
    _spec(
        MONITORING_COST,
        schemas.CostItem,
        ("item",),
        None,
        "Projected monthly cost per item (compute, retraining, storage growth, cloud vs edge "
        "inference) from recorded CPU-seconds, wall time and bytes written.",
    ),
    _spec(
        MONITORING_DRIFT,
        schemas.DriftRow,
        ("computed_at", "family", "kind", "segment", "feature"),
        None,
        "Per drift evaluation, model family and feature: PSI, KS, Wasserstein between the "
        "training (reference) window and the recent window, and the family's verdict.",
    ),
    _spec(
        MONITORING_LAKE_MAINTENANCE,
        schemas.LakeMaintenance,
        ("run_at", "table"),
        None,
        "Nightly lakehouse maintenance per table: compaction/Z-order and VACUUM figures.",
    ),
    # batch inference over history (fleet/batch.py): one table per ONNX-exportable family,
    # named predictions.<family>; which feature table each family reads is ml/families.py's
    # to say (the lake does not import the model rooms)
    *(
        _spec(
            qualified_name,
            schemas.BatchPrediction,
            ("source_id",),
            "date",
            f"Daily: every row of the {qualified_name.split('.', 1)[1]} family's feature "
            "table re-scored by a model version (the champion by default) through the edge's "
            "ONNX session, beside the edge's own prediction.",
        )
        for qualified_name in (PREDICTIONS_SENSOR_ANOMALY, PREDICTIONS_VISION_DEFECT,
                               PREDICTIONS_PART_DETECTION)
    ),
)

_BY_NAME = {spec.qualified_name: spec for spec in TABLES}


def table(qualified_name: str) -> TableSpec:
    """Look a table up by ``layer.name``; a typo gets the list of known tables."""
    try:
        return _BY_NAME[qualified_name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise KeyError(f"unknown table {qualified_name!r}; known tables: {known}") from None


def tables(layer: str | None = None) -> list[TableSpec]:
    return [spec for spec in TABLES if layer is None or spec.layer == layer]
