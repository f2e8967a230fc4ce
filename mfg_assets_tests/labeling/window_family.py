"""A tiny family on ``features.sensor_windows`` that keeps the frames it was trained on.

The challenger asset hands a family the training frame; this one records it in ``SEEN`` so a
test can look at the labels training got. The model flags a window when ``temp__mean`` is
above a threshold (the searched parameter); the last fifth of the rows is the hold-out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mfg_assets.lake.names import FEATURES_SENSOR_WINDOWS
from mfg_assets.ml.base import ModelFamily, Trained
from mfg_assets.ml.families import DriftInputs, FamilySpec

FAMILY = ModelFamily(name="window_toy", primary_metric="accuracy", higher_is_better=True,
                     floors={}, flavor="sklearn")
FEATURE_TABLE = FEATURES_SENSOR_WINDOWS
SPEC = FamilySpec(
    model=FAMILY,
    module=__name__,
    feature_table=FEATURE_TABLE,
    drift=DriftInputs(FEATURE_TABLE, "window_start", "machine_id", "sensor"),
    kinds=frozenset({"sklearn", "mlflow"}),
    description="A toy window classifier that records its training frames.",
)
SEEN: list[pl.DataFrame] = []  # every frame train() was given, in order


def search_space(budget: int, seed: int) -> list[dict]:
    return [{"threshold": t} for t in (1.5, 2.5)[:budget]]


def _accuracy(model: dict, frame: pl.DataFrame) -> float:
    rows = frame.filter(pl.col("is_fault").is_not_null())
    flagged = rows.get_column("temp__mean").to_numpy() > model["threshold"]
    return float((flagged == rows.get_column("is_fault").to_numpy()).mean())


def _holdout(frame: pl.DataFrame) -> pl.DataFrame:
    return frame[-(frame.height // 5):]


def train(features: pl.DataFrame, params: dict, seed: int = 0) -> Trained:
    SEEN.append(features)
    model = {"threshold": params["threshold"]}
    fit = features[: -(features.height // 5)]
    return Trained(model=model, params=params, metrics={"accuracy": _accuracy(model, fit)},
                   holdout_metrics={"accuracy": _accuracy(model, _holdout(features))},
                   figures={}, info={"rows": features.height})


def evaluate(model: Any, features: pl.DataFrame, info: dict) -> dict[str, float]:
    return {"accuracy": _accuracy(model, _holdout(features))}


def save(trained: Trained, path: Path) -> None:
    (path / "model.json").write_text(json.dumps({"model": trained.model, "info": trained.info}))


def load(path: Path) -> tuple[Any, dict]:
    doc = json.loads((path / "model.json").read_text())
    return doc["model"], doc["info"]


def windows(n: int = 40, fault: range = range(10, 20)) -> pl.DataFrame:
    """``n`` 10-minute windows of machine w1 from 08:00; ``is_fault`` over ``fault``."""
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    starts = [start + timedelta(minutes=10 * i) for i in range(n)]
    temp = np.where(np.isin(np.arange(n), list(fault)), 3.0, 1.0)
    return pl.DataFrame({
        "machine_id": ["w1"] * n, "machine_type": ["welder"] * n, "window_start": starts,
        "window_end": [s + timedelta(minutes=10) for s in starts], "n_samples": [60] * n,
        "is_fault": [i in fault for i in range(n)], "temp__mean": temp,
    }, schema_overrides={"window_start": pl.Datetime("us", "UTC"),
                         "window_end": pl.Datetime("us", "UTC")})
