"""What every model family shares: its description, a training result, splits, metrics.

A family module (``anomaly``, ``forecast``, ``yield_model``, ``vision``) exposes

    FAMILY: ModelFamily
    FEATURE_TABLE: str                      # the features table it trains on
    search_space(budget, seed) -> list[dict]
    train(features, params, seed=0) -> Trained
    evaluate(model, features, info) -> dict[str, float]   # holdout part of ``features``
    save(trained, path) -> None
    load(path) -> (model, info)

Plain functions: MLflow tracking and Dagster wiring live elsewhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

INFO_FILE = "info.json"
SPLITS = ("train", "validation", "test")


# Metric name of the number of positive rows an evaluation scored (a count, not a score).
POSITIVES = "positives"


@dataclass(frozen=True)
class ModelFamily:
    name: str  # "sensor_anomaly", "failure_forecast", "process_yield", "vision_defect"
    primary_metric: str  # e.g. "f1", "mape", "r2", "accuracy"
    higher_is_better: bool
    floors: dict[str, float]  # absolute floors a first model must pass
    flavor: str  # "pytorch" | "prophet" | "sklearn"
    # Lower-is-better metric that still ranks two models on rows without positives (how
    # often each alarms on normal operation): a drift retrain's gate compares on it when the
    # recent window's hold-out holds fewer than ``min_positives`` positive rows (its evaluate()
    # reports them as the POSITIVES metric), see ``gate.quiet_window_decision``.
    quiet_metric: str | None = None
    min_positives: int = 10

    def passes_floors(self, metrics: dict[str, float]) -> bool:
        """True when every floor is met (a floor on a lower-is-better metric is a ceiling)."""
        return not self.floor_failures(metrics)

    def floor_failures(self, metrics: dict[str, float]) -> dict[str, tuple[float, float]]:
        """metric -> (value, floor) for each floor that is missed (or not measured)."""
        failures = {}
        for name, floor in self.floors.items():
            value = metrics.get(name, math.nan)
            lower_is_better = self.metric_lower_is_better(name)
            ok = value <= floor if lower_is_better else value >= floor
            if not ok or math.isnan(value):
                failures[name] = (value, floor)
        return failures

    def metric_lower_is_better(self, name: str) -> bool:
        if name == self.primary_metric:
            return not self.higher_is_better
        return name in LOWER_IS_BETTER

    def better(self, a: float, b: float) -> bool:
        """Is primary-metric value ``a`` strictly better than ``b``?"""
        return a > b if self.higher_is_better else a < b


# Error-type metrics; everything else (accuracy, f1, r2, coverage...) is higher-is-better.
LOWER_IS_BETTER = frozenset({"mape", "smape", "mae", "rmse", "interval_error", "brier",
                             "false_alarm_rate"})


@dataclass
class Trained:
    model: Any
    params: dict[str, Any]
    metrics: dict[str, float]  # on the validation split (used by the search)
    holdout_metrics: dict[str, float]  # on the held-out test split (used by promotion)
    figures: dict[str, bytes] = field(default_factory=dict)  # name.png -> PNG bytes
    info: dict[str, Any] = field(default_factory=dict)  # threshold, names, input spec, n_train


# -- splits ------------------------------------------------------------------------------------

# Time-blocked split for tables without their own split column: the clock is cut into
# blocks (one hour by default) and each block goes wholly to one split by its position in
# a fixed 20-block cycle (14 train, 3 validation, 3 test, interleaved). Neighbouring rows,
# which share machine state, lot and weather, stay on the same side; every stretch of a
# few hours has all three splits; the assignment depends only on a row's own time, so it
# is the same on every rebuild and for every model version (a fair champion/challenger
# comparison on the same test rows).
BLOCK_CYCLE = "TTTVTTTETTVTTTETTVTE"
_SPLIT_OF = {"T": "train", "V": "validation", "E": "test"}


def block_split(ts: pl.Expr, block: str = "1h") -> pl.Expr:
    """``train`` / ``validation`` / ``test`` for each timestamp (a polars expression)."""
    index = ts.dt.epoch("s") // _block_seconds(block)
    position = (index % len(BLOCK_CYCLE)).cast(pl.Int64)
    return position.replace_strict(
        list(range(len(BLOCK_CYCLE))), [_SPLIT_OF[c] for c in BLOCK_CYCLE], return_dtype=pl.String
    )


def _block_seconds(block: str) -> int:
    start = pl.datetime(2000, 1, 1)
    return int(pl.select((start.dt.offset_by(block) - start).dt.total_seconds()).item())


# -- metrics -----------------------------------------------------------------------------------


def binary_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray | None = None
) -> dict[str, float]:
    """precision, recall, f1 (positive class = True) and auroc when both classes occur."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    out = {
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
    }
    both = y_true.any() and not y_true.all()
    out["auroc"] = float(roc_auc_score(y_true, score)) if score is not None and both else math.nan
    return out


# -- persistence and determinism ---------------------------------------------------------------


def write_info(path: Path, info: dict[str, Any], params: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    doc = {"info": info, "params": params}
    (path / INFO_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True, default=_jsonable))


def read_info(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = json.loads((Path(path) / INFO_FILE).read_text())
    return doc["info"], doc["params"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@contextmanager
def torch_session(seed: int, threads: int = 1) -> Iterator[None]:
    """Seeded, deterministic torch on ``threads`` CPU threads; restores the thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sample_params(
    rng: np.random.Generator, grid: dict[str, list[Any]], default: dict[str, Any], budget: int
) -> list[dict[str, Any]]:
    """``budget`` distinct param sets: the default first, then random grid points."""
    trials = [dict(default)]
    seen = {json.dumps(default, sort_keys=True, default=str)}
    attempts = 0
    while len(trials) < budget and attempts < 50 * budget:
        attempts += 1
        trial = dict(default)
        for name, options in grid.items():
            trial[name] = options[int(rng.integers(len(options)))]
        key = json.dumps(trial, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            trials.append(trial)
    return trials
