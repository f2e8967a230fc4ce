"""Model quality before and after: the old and the new champion on the same post-drift
windows that neither trained on (the validation and test blocks after the onset)."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

import polars as pl

from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.ml import anomaly
from mfg_assets.ml.base import binary_metrics
from mfg_assets.ml.registry import ModelRegistry, registered_name


def post_drift_holdout(lake: Lake, onset_sim: datetime, block: str) -> pl.DataFrame:
    """Labelled windows after the onset outside the training blocks."""
    windows = lake.read(table(anomaly.FEATURE_TABLE))
    rows = anomaly.with_split(windows, block).filter(
        (pl.col("window_start") >= onset_sim) & (pl.col("_split") != "train")
        & pl.col("is_fault").is_not_null())
    return rows.drop("_split")


def score_version(registry: ModelRegistry, version: str, rows: pl.DataFrame,
                  target: str | None) -> dict[str, float]:
    """f1 / precision / recall / auroc on ``rows``, and the false-alarm rate on the normal
    windows of the drifted machine ``target`` (what the operators see)."""
    mv = registry.client.get_model_version(registered_name(anomaly.FAMILY), version)
    with tempfile.TemporaryDirectory(prefix="mfg-loop-eval-") as tmp:
        model, _ = registry.load(anomaly, mv, Path(tmp))
    rows = rows.filter(pl.col("machine_type").is_in(list(model.types)))
    out = binary_metrics(rows.get_column("is_fault").to_numpy(), model.predict(rows),
                         model.score(rows)) if rows.height else {}
    if target:
        normal = rows.filter((pl.col("machine_id") == target) & ~pl.col("is_fault"))
        if normal.height:
            out["false_alarm_rate_target"] = float(model.predict(normal).mean())
    out["windows"] = float(rows.height)
    return out


def before_after(lake: Lake, registry: ModelRegistry, old: str, new: str,
                 onset_sim: datetime, target: str | None) -> dict[str, dict[str, float]]:
    mv = registry.client.get_model_version(registered_name(anomaly.FAMILY), new)
    with tempfile.TemporaryDirectory(prefix="mfg-loop-eval-") as tmp:
        _, info = registry.load(anomaly, mv, Path(tmp))
    rows = post_drift_holdout(lake, onset_sim, info["split"]["block"])
    return {"before": score_version(registry, old, rows, target),
            "after": score_version(registry, new, rows, target)}
