"""Batch inference over history: a model version re-scores a day of its feature table.

Plants re-score the past with a new champion (or any chosen version): last month's windows
and images, to compare with what the edges said, find missed faults and feed analysts.

    model = exported_model(registry, "vision_defect")            # champion -> ONNX, cached
    outcome = predict_day(lake, model, date(2026, 11, 3))       # -> predictions.vision_defect

The model is exported to ONNX once per model version (``fleet/export.py``, fp32: the
model's own numbers, not an edge's int8 copy) and cached under the data dir, so a 30-day
backfill exports once. Scoring goes through the edge's own ``Predictor`` (session,
preprocessing, scores and decisions of ``edge/predictor.py``) in batches, so a batch score
is what an edge with the same model would have said. Rows carry the edge's prediction of
the same input (``silver.edge_predictions``, matched on the source id the edge publishes)
with the bundle that made it.

Which families: those whose edge kind has an exporter below (the families an edge serves:
their models are ONNX graphs already).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mfg_assets.edge.predictor import (
    Predictor,
    image_preprocessing,
    normalise,
    prepare_pixels,
    read_png,
)
from mfg_assets.lake.delta import Lake, WriteResult
from mfg_assets.lake.registry import TableSpec, table
from mfg_assets.ml import families
from mfg_assets.ml.registry import ModelRegistry, registered_name
from mfg_assets.settings import get_settings

MANIFEST = "manifest.json"
EDGE_PREDICTIONS = "silver.edge_predictions"
# A multiclass classifier has no threshold of its own: a defect when p(normal) < 0.5.
DEFAULT_CLASSIFIER_THRESHOLD = 0.5


def predictions_table(family: str) -> TableSpec:
    return table(f"predictions.{family}")


def batch_families() -> list[str]:
    """Families that batch inference scores: their edge kind has an ONNX exporter here."""
    return [e.name for e in families.FAMILIES.values() if e.edge_kind in _EXPORTERS]


def default_cache_dir() -> Path:
    return get_settings().data_dir / "batch" / "onnx"


# -- the model, exported once per version ------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One ONNX graph and how to feed it: the whole model, or one machine type's."""

    onnx: Path
    preprocessing: dict[str, Any]
    threshold: float


@dataclass(frozen=True)
class ExportedModel:
    family: str
    model_name: str  # registered name
    version: str
    parts: dict[str, Part]  # "" for an image model; machine type for the sensor model
    folder: Path
    cached: bool = False  # True when no export ran

    def predictor(self, part: str, threshold: float | None = None) -> Predictor:
        """The edge's predictor over one part (the same session and decision code)."""
        p = self.parts[part]
        return Predictor.from_files(p.onnx, p.preprocessing,
                                    p.threshold if threshold is None else threshold)


def resolve_version(registry: ModelRegistry, family: str, version: str = "") -> Any:
    """The MLflow model version to score with: ``version``, else the champion."""
    name = registered_name(family)
    if version:
        from mlflow.exceptions import MlflowException

        try:
            return registry.client.get_model_version(name, version)
        except MlflowException as exc:
            raise ValueError(f"{name} has no version {version!r}") from exc
    champion = registry.champion(name)
    if champion is None:
        raise ValueError(f"{name} has no champion yet: materialize "
                         f"models/{family}_champion first, or choose a model_version")
    return champion


def exported_model(
    registry: ModelRegistry, family: str, version: str = "", cache_dir: Path | None = None
) -> ExportedModel:
    """The ONNX export of ``family``'s champion (or ``version``), from the cache if there.

    The export lands in a temporary folder renamed into place, so a crashed export is never
    mistaken for a cached one and two concurrent backfill runs do not corrupt each other.
    """
    mv = resolve_version(registry, family, version)
    folder = Path(cache_dir or default_cache_dir()) / family / f"v{mv.version}"
    if (folder / MANIFEST).exists():
        return _load(folder, family, cached=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{family}-", dir=folder.parent) as tmp:
        work = Path(tmp)
        model, info = registry.load(families.family(family), mv, work / "model")
        out = export_to_folder(family, str(mv.version), model, info, work / "onnx")
        try:
            os.replace(out, folder)
        except OSError:  # another run cached it first: use theirs
            if not (folder / MANIFEST).exists():
                raise
    return _load(folder, family, cached=False)


def export_to_folder(family: str, version: str, model: Any, info: dict[str, Any],
                     out: Path) -> Path:
    """Export a loaded model (``module.load``'s model and info) into ``out`` with its
    manifest; ``load_folder(out, family)`` reads it back."""
    exporter = _EXPORTERS[families.spec(family).edge_kind or ""]
    parts = exporter(model, info, out)
    manifest = {"family": family, "model_name": registered_name(family), "version": version,
                "parts": {k: {"onnx": p.onnx.name, "preprocessing": p.preprocessing,
                              "threshold": p.threshold} for k, p in parts.items()}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out


def load_folder(folder: Path, family: str) -> ExportedModel:
    return _load(folder, family, cached=True)


def _load(folder: Path, family: str, cached: bool) -> ExportedModel:
    doc = json.loads((folder / MANIFEST).read_text())
    parts = {k: Part(folder / p["onnx"], p["preprocessing"], float(p["threshold"]))
             for k, p in doc["parts"].items()}
    return ExportedModel(family, doc["model_name"], doc["version"], parts, folder, cached)


def _export_vision(net: Any, info: dict[str, Any], out: Path) -> dict[str, Part]:
    from mfg_assets.fleet.export import export_model

    size = int(info["image_size"])
    normal = info.get("normal_class", "ok")
    example = np.random.default_rng(0).standard_normal((2, 1, size, size)).astype(np.float32)
    export = export_model(net, example, out, name="model")
    if info["mode"] == "one_class":
        spec = image_preprocessing(size, None, normal, output="score")
        threshold = float(info["threshold"])
    else:
        spec = image_preprocessing(size, list(info["classes"]), normal)
        threshold = DEFAULT_CLASSIFIER_THRESHOLD
    return {"": Part(export.path, spec, threshold)}


def _export_windows(model: Any, info: dict[str, Any], out: Path) -> dict[str, Part]:
    from mfg_assets.fleet.export import export_model

    parts = {}
    for i, (machine_type, spec) in enumerate(sorted(info["machine_types"].items())):
        columns = list(spec["columns"])
        example = np.abs(np.random.default_rng(0).standard_normal((2, len(columns))))
        export = export_model(model.net(machine_type), example.astype(np.float32), out,
                              name=f"type{i}")
        # no "window": batch scoring reads finished feature rows, it does not window readings
        preprocessing = {"kind": "sensor_window", "output": "score", "columns": columns,
                         "input": {"name": "input", "shape": [None, len(columns)],
                                   "dtype": "float32"}}
        parts[machine_type] = Part(export.path, preprocessing, float(spec["threshold"]))
    return parts


# -- scoring one day ---------------------------------------------------------------------------


@dataclass
class DayOutcome:
    family: str
    day: date
    model_name: str
    model_version: str
    rows: int = 0  # feature rows of the day
    scored: int = 0
    unscored: dict[str, int] = field(default_factory=dict)  # reason -> rows
    with_edge: int = 0  # rows an edge also scored
    disagreements: int = 0  # rows where the edge decided otherwise
    features_version: int | None = None
    write: WriteResult | None = None
    seconds_scoring: float = 0.0


def day_rows(lake: Lake, family: str, day: date, version: int | None = None) -> pl.DataFrame:
    """The rows of ``family``'s feature table whose time falls on ``day`` (UTC)."""
    entry = families.spec(family)
    ts = entry.drift.ts
    start = datetime.combine(day, datetime.min.time(), UTC)
    # a range on the column itself (not its date): row-group statistics can prune on it
    return (lake.scan(table(entry.feature_table), version)
            .filter((pl.col(ts) >= start) & (pl.col(ts) < start + timedelta(days=1)))
            .sort(ts).collect())


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _value_text(value: Any) -> str:
    """The decision as the edge's value text in silver (JSON of a flag, a class name)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _score(predictor: Predictor, x: np.ndarray) -> tuple[list[float], list[str]]:
    preds = predictor.decide(x)
    return [p.score for p in preds], [_value_text(p.value) for p in preds]


def prepare_batch(pixels: list[np.ndarray], spec: dict[str, Any]) -> np.ndarray:
    """The edge's per-image preparation for a batch: images already at the model's size are
    normalised in one call (the same ``normalise``, per image along its axes), others go
    through ``prepare_pixels`` one by one (resized first, as on the edge)."""
    size = int(spec["image_size"])
    if all(p.shape == (size, size) for p in pixels):
        return normalise(np.stack(pixels).astype(np.float32)[:, None], spec["normalisation"])
    return np.concatenate([prepare_pixels(p, spec) for p in pixels])


def score_images(model: ExportedModel, rows: pl.DataFrame, batch_size: int,
                 threshold: float | None) -> pl.DataFrame:
    predictor = model.predictor("", threshold)
    scores: list[float] = []
    decisions: list[str] = []
    pngs = rows.get_column("png")
    for part in _batches(rows.height, batch_size):
        x = prepare_batch([read_png(p) for p in pngs[part].to_list()], predictor.spec)
        s, d = _score(predictor, x)
        scores += s
        decisions += d
    return rows.select(
        pl.col("ts"), pl.col("image_id").alias("source_id"), pl.col("camera_id").alias("asset_id"),
        pl.col("label").alias("truth"),
    ).with_columns(pl.Series("score", scores, pl.Float64), pl.Series("decision", decisions,
                                                                    pl.String),
                   pl.lit(predictor.threshold, pl.Float64).alias("threshold"))


def window_matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """Feature rows -> float32 in the model's column order, NaN where missing (as the
    edge's window vectors are)."""
    present = [pl.col(c) if c in frame.columns else pl.lit(None) for c in columns]
    x = frame.select(e.cast(pl.Float32).alias(c) for e, c in zip(present, columns, strict=True))
    return x.fill_null(float("nan")).to_numpy().astype(np.float32)


def score_windows(model: ExportedModel, rows: pl.DataFrame, batch_size: int,
                  threshold: float | None) -> tuple[pl.DataFrame, dict[str, int]]:
    frames, unscored = [], {}
    for machine_type, mine in rows.group_by("machine_type", maintain_order=True):
        name = str(machine_type[0])
        if name not in model.parts:
            unscored[f"machine type {name} unknown to the model"] = mine.height
            continue
        predictor = model.predictor(name, threshold)
        x = window_matrix(mine, model.parts[name].preprocessing["columns"])
        scores: list[float] = []
        decisions: list[str] = []
        for part in _batches(len(x), batch_size):
            s, d = _score(predictor, x[part])
            scores += s
            decisions += d
        frames.append(mine.select(
            pl.col("window_start").alias("ts"),
            # the id an edge publishes for the window (edge/windows.py CompletedWindow)
            pl.concat_str(pl.col("machine_id"), pl.lit("/"),
                          pl.col("window_start").dt.epoch("ms").cast(pl.String)).alias("source_id"),
            pl.col("machine_id").alias("asset_id"),
            pl.col("is_fault").cast(pl.String).str.to_lowercase().alias("truth"),
        ).with_columns(pl.Series("score", scores, pl.Float64),
                       pl.Series("decision", decisions, pl.String),
                       pl.lit(predictor.threshold, pl.Float64).alias("threshold")))
    empty = pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC"), "source_id": pl.String,
                                 "asset_id": pl.String, "truth": pl.String,
                                 "score": pl.Float64, "decision": pl.String,
                                 "threshold": pl.Float64})
    return (pl.concat(frames) if frames else empty), unscored


def edge_side(lake: Lake, family: str, day: date, source_ids: pl.Series) -> pl.DataFrame:
    """The edge's latest prediction of each source id (published on the day or the next:
    a window closing at midnight is published after it)."""
    spec = table(EDGE_PREDICTIONS)
    frames = [lake.read_partition(spec, d) for d in (day, day + timedelta(days=1))]
    return (pl.concat(frames)
            .filter((pl.col("model") == family) & pl.col("source_id").is_in(source_ids.implode()))
            .sort("ts").unique("source_id", keep="last")
            .select("source_id", "edge_id", "bundle_id", pl.col("score").alias("edge_score"),
                    pl.col("value").alias("edge_decision")))


def predict_day(
    lake: Lake,
    model: ExportedModel,
    day: date | str,
    *,
    batch_size: int = 512,
    threshold: float | None = None,
    now: datetime | None = None,
    **commit: str,
) -> DayOutcome:
    """Score ``day``'s feature rows with ``model``, join the edges' predictions, and replace
    the day's partition of ``predictions.<family>`` (idempotent: a re-run rewrites it)."""
    import time

    day = day if isinstance(day, date) else date.fromisoformat(day)
    family = model.family
    features = table(families.spec(family).feature_table)
    outcome = DayOutcome(family, day, model.model_name, model.version)
    outcome.features_version = lake.version(features)
    rows = day_rows(lake, family, day, outcome.features_version)
    outcome.rows = rows.height
    started = time.perf_counter()
    scorer = _SCORERS[families.spec(family).edge_kind or ""]
    scored, outcome.unscored = scorer(model, rows, batch_size, threshold)
    outcome.seconds_scoring = time.perf_counter() - started
    edges = edge_side(lake, family, day, scored.get_column("source_id"))
    frame = scored.join(edges, on="source_id", how="left").with_columns(
        pl.lit(day).alias("date"),
        pl.lit(model.model_name).alias("model_name"),
        pl.lit(model.version).alias("model_version"),
        pl.lit(now or datetime.now(UTC)).dt.cast_time_unit("us").alias("scored_at"),
    )
    outcome.scored = frame.height
    outcome.with_edge = int(frame.get_column("bundle_id").is_not_null().sum())
    outcome.disagreements = int(frame.filter(
        pl.col("edge_decision").is_not_null() & (pl.col("edge_decision") != pl.col("decision"))
    ).height)
    outcome.write = lake.overwrite_partition(
        predictions_table(family), frame, day, model_version=model.version,
        **{f"mfg.read.{features.qualified_name}": str(outcome.features_version)}, **commit)
    return outcome


def day_summary(outcome: DayOutcome) -> dict[str, Any]:
    """What a person wants to know of one scored day, as plain data."""
    return {
        "model": outcome.model_name,
        "model_version": outcome.model_version,
        "feature_rows": outcome.rows,
        "rows_scored": outcome.scored,
        "rows_unscored": dict(outcome.unscored),
        "rows_with_edge_prediction": outcome.with_edge,
        "edge_disagreements": outcome.disagreements,
        "features_delta_version": outcome.features_version,
        "scoring_seconds": round(outcome.seconds_scoring, 3),
        "rows_per_second": round(outcome.scored / outcome.seconds_scoring, 1)
        if outcome.seconds_scoring > 0 else 0.0,
    }


def clear_cache(cache_dir: Path | None = None) -> None:
    shutil.rmtree(cache_dir or default_cache_dir(), ignore_errors=True)


def _score_images(model: ExportedModel, rows: pl.DataFrame, batch_size: int,
                  threshold: float | None) -> tuple[pl.DataFrame, dict[str, int]]:
    return score_images(model, rows, batch_size, threshold), {}


# How each kind of edge's family is exported and scored (a family's edge_kind).
_EXPORTERS: dict[str, Callable[..., dict[str, Part]]] = {
    "camera": _export_vision,
    "line": _export_windows,
}
_SCORERS: dict[str, Callable[..., tuple[pl.DataFrame, dict[str, int]]]] = {
    "camera": _score_images,
    "line": score_windows,
}
