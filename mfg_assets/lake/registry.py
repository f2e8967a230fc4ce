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


def _bronze(name: str, description: str) -> TableSpec:
    return TableSpec(
        "bronze", name, schemas.BronzeMessage, ("message_id",), "event_date", description
    )


TABLES: tuple[TableSpec, ...] = (
    _bronze("sensor_readings", "Validated sensor messages (JSON and Sparkplug B), raw payload."),
    _bronze("process_runs", "Validated process-run messages, one per produced unit."),
    _bronze("inspection_images", "Validated inspection image messages (base64 PNG payloads)."),
    _bronze("image_boxes", "Imported part boxes per image (`mfg import images --boxes`)."),
    _bronze("edge_telemetry", "Validated edge heartbeats/telemetry."),
    _bronze("edge_predictions", "Validated predictions published by edge runtimes."),
    _bronze("feedback", "Operator verdicts on edge predictions (line HMI or `mfg label`)."),
    TableSpec(
        "bronze",
        "device_events",
        schemas.DeviceEvent,
        ("message_id", "event_type"),
        "event_date",
        "Sparkplug B births, deaths and rebirth requests.",
    ),
    TableSpec(
        "bronze",
        "quarantine",
        schemas.Quarantine,
        ("quarantine_id",),
        None,
        "Messages refused at ingest (unknown topic, bad payload, schema), with the reason.",
    ),
    TableSpec(
        "bronze",
        "ingest_batches",
        schemas.IngestBatch,
        ("ingest_batch_id",),
        None,
        "One row per committed ingest batch: replay file or gateway micro-batch.",
    ),
    TableSpec(
        "bronze",
        "validation_results",
        schemas.ValidationResult,
        ("minute", "channel", "ingest_batch_id"),
        None,
        "Contract compliance: received/valid/invalid and top errors per channel and minute.",
    ),
    TableSpec(
        "bronze",
        "ground_truth",
        schemas.GroundTruth,
        ("record_id",),
        None,
        "Ground-truth records (injected faults, drift scenarios) as raw JSON.",
    ),
    TableSpec(
        "silver",
        "sensor_readings",
        schemas.SensorReading,
        (*PLACE_KEY, "machine_id", "sensor", "ts"),
        "date",
        "Typed sensor readings, long form: one row per machine, sensor and time.",
    ),
    TableSpec(
        "silver",
        "process_runs",
        schemas.ProcessRun,
        (*PLACE_KEY, "unit_id"),
        "date",
        "Typed process runs: one row per produced unit with its measured yield.",
    ),
    TableSpec(
        "silver",
        "process_parameters",
        schemas.ProcessParameter,
        (*PLACE_KEY, "unit_id", "name"),
        "date",
        "Process parameters per unit, long form (names come from the data).",
    ),
    TableSpec(
        "silver",
        "inspection_images",
        schemas.InspectionImage,
        (*PLACE_KEY, "image_id"),
        "date",
        "Decoded inspection images (PNG bytes) with QA labels where given.",
    ),
    TableSpec(
        "silver",
        "image_boxes",
        schemas.ImageBoxes,
        (*PLACE_KEY, "image_id"),
        "date",
        "Imported part boxes per inspection image (COCO JSON or YOLO txt), in pixels.",
    ),
    TableSpec(
        "silver",
        "edge_telemetry",
        schemas.EdgeTelemetry,
        (*PLACE_KEY, "edge_id", "ts"),
        "date",
        "Typed edge heartbeats with health figures and log-level counts.",
    ),
    TableSpec(
        "silver",
        "edge_predictions",
        schemas.EdgePrediction,
        (*PLACE_KEY, "edge_id", "model", "source_id"),
        "date",
        "Typed edge predictions with the bundle that made each.",
    ),
    TableSpec(
        "silver",
        "labels",
        schemas.Label,
        # one row per verdict: an operator who changes their mind adds a later row, and the
        # latest verdict on a prediction wins (mfg_assets.labeling.store.current_labels)
        (*PLACE_KEY, "edge_id", "model", "source_id", "operator_id", "ts"),
        "date",
        "Operator verdicts on edge predictions (confirm, reject or a class label), with the "
        "judged prediction (edge, model, source id), its bundle, who and when.",
    ),
    TableSpec(
        "silver",
        "quarantine",
        schemas.Quarantine,
        ("quarantine_id",),
        None,
        "Rows refused by silver typing or schema checks, with the reason.",
    ),
    TableSpec(
        "silver",
        "fault_labels",
        schemas.FaultLabel,
        ("fault_id",),
        None,
        "Ground-truth fault intervals (onset, failure, end) per machine.",
    ),
    TableSpec(
        "features",
        "sensor_windows",
        schemas.SensorWindow,
        ("machine_id", "window_start"),
        None,
        "Per machine and 10-minute window: statistics of every sensor (wide, "
        "<sensor>__<stat>) and whether a ground-truth fault overlaps the window.",
    ),
    TableSpec(
        "features",
        "process_units",
        schemas.ProcessUnit,
        ("unit_id",),
        None,
        "One row per produced unit: process parameters (param__<name>), yield and pass/fail.",
    ),
    TableSpec(
        "features",
        "image_dataset",
        schemas.ImageSample,
        ("image_id",),
        None,
        "Labelled inspection images with a time-ordered train/validation/test split per camera.",
    ),
    TableSpec(
        "features",
        "assembly_images",
        schemas.AssemblySample,
        ("image_id",),
        None,
        "Assembly images with part boxes and empty slots, time-ordered split per camera. "
        "Input of the part detection model.",
    ),
    TableSpec(
        "features",
        "edge_telemetry",
        schemas.EdgeWindow,
        ("edge_id", "window_start"),
        None,
        "Per edge device and window: heartbeats, CPU/memory, warnings/errors, firmware.",
    ),
    TableSpec(
        "edge",
        "bundles",
        schemas.EdgeBundle,
        ("bundle_id",),
        None,
        "Signed per-edge bundles: model version, precision, threshold, lineage, store.",
    ),
    TableSpec(
        "edge",
        "rollouts",
        schemas.EdgeRollout,
        ("rollout_id",),
        None,
        "Rollout state per candidate model: canary/control edges, decision and reason.",
    ),
    TableSpec(
        "monitoring",
        "inspection_stats",
        schemas.InspectionStat,
        ("date", "scope", "line", "edge_id", "model"),
        None,
        "Per day, line and edge: defect rate, accuracy against QA labels, latency "
        "p50/p95/p99 and rollout stage of the edge predictions (rebuilt from silver).",
    ),
    TableSpec(
        "monitoring",
        "cost",
        schemas.CostItem,
        ("item",),
        None,
        "Projected monthly cost per item (compute, retraining, storage growth, cloud vs edge "
        "inference) from recorded CPU-seconds, wall time and bytes written.",
    ),
    TableSpec(
        "monitoring",
        "drift",
        schemas.DriftRow,
        ("computed_at", "family", "kind", "segment", "feature"),
        None,
        "Per drift evaluation, model family and feature: PSI, KS, Wasserstein between the "
        "training (reference) window and the recent window, and the family's verdict.",
    ),
    TableSpec(
        "monitoring",
        "lake_maintenance",
        schemas.LakeMaintenance,
        ("run_at", "table"),
        None,
        "Nightly lakehouse maintenance per table: compaction/Z-order and VACUUM figures.",
    ),
    # batch inference over history (fleet/batch.py): one table per ONNX-exportable family
    *(
        TableSpec(
            "predictions",
            family,
            schemas.BatchPrediction,
            ("source_id",),
            "date",
            f"Daily: every {source} row re-scored by a {family} model version (the champion by "
            "default) through the edge's ONNX session, beside the edge's own prediction.",
        )
        for family, source in (("sensor_anomaly", "features.sensor_windows"),
                               ("vision_defect", "features.image_dataset"))
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
