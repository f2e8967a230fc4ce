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
    # Metrics on which the model must beat every simple baseline measured in the same run
    # on the same rows (its evaluate() reports them as ``baseline.<name>.<metric>``, see
    # ``ml/baselines.py``) by at least ``baseline_margin`` (absolute); a metric that neither
    # the model nor any baseline can measure on those rows (one class only) is skipped with
    # a note. Empty: the family has no baselines (unsupervised, forecasts): floors only.
    baseline_metrics: tuple[str, ...] = ()
    baseline_margin: float = 0.0
    # The baselines that race the model (empty: every one reported); the others are shown
    # next to it as references (an unsupervised detector is not raced against a classifier
    # that needs the fault labels it was built to do without).
    gate_baselines: tuple[str, ...] = ()

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


# Honest splits: which one fits the data, said out loud (``SplitPlan.reason``).
#
# - ``time_blocks`` (:func:`block_split`) only where the table has a real time axis: a time
#   column whose hour blocks (``block``) give each of train / validation / test at least
#   MIN_BLOCKS_PER_PART distinct blocks and at least half its nominal share of the rows,
#   and whose rows fill MIN_BLOCK_OCCUPANCY of the blocks they span.
#   Imported files stamped with their modification time (a whole export within minutes) or
#   one run per day at the same hour (every block lands on the same cycle position) fail it.
# - ``stratified`` otherwise: every unit (the ``group`` column's value: a unit, module or
#   camera; else the row's ``key``) gets a seeded hash, uniform in [0, 1), that picks its
#   part (70 / 15 / 15), so each label's units spread over the parts in those shares. The
#   hash, not a rank, decides: a unit's part never depends on which other rows are there,
#   so a champion scored on a newer table or on its last hours (the drift gate) sees the
#   same parts as the challenger; the class balance per part is then checked, and a class
#   missing from a part is refused (:func:`check_split`).
# - ``cross_validation`` for small tables (< SMALL_TABLE_ROWS): units ranked by that hash
#   within each label stratum and cut into ``folds`` folds (exactly stratified; hour blocks
#   are the groups where a time axis exists); metrics are pooled over the out-of-fold
#   predictions and the final model is refit on all rows.
MIN_BLOCKS_PER_PART = 3
# ...and the rows must fill at least this share of the blocks between the first and the
# last time (a plant running two shifts on weekdays fills ~48 % of its hours; one run a day
# fills 1/24 of them)
MIN_BLOCK_OCCUPANCY = 0.25
SMALL_TABLE_ROWS = 1000
CV_FOLDS = 5
HOLDOUT_FRACTIONS = (0.7, 0.15, 0.15)
_NOMINAL = dict(zip(SPLITS, HOLDOUT_FRACTIONS, strict=True))


class SplitRefused(ValueError):
    """The data cannot be split into parts that judge a model; the message says what to add."""


@dataclass(frozen=True)
class SplitPlan:
    """How a table is split, and why (recorded in the model's info, metadata and run)."""

    method: str  # "time_blocks" | "stratified" | "cross_validation"
    reason: str
    seed: int = 0
    ts: str | None = None  # time column (time_blocks; cross_validation groups by its blocks)
    block: str = "1h"
    label: str | None = None  # stratified by it
    group: str | None = None  # units that stay together (unit, module, camera)
    key: str | None = None  # a row's identity when no group column is given
    folds: int = 0  # cross_validation only
    time_groups: bool = False  # cross_validation: groups are the time column's blocks

    def to_info(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> SplitPlan:
        if "method" in info and info["method"] == "block":  # models saved before plans
            return cls("time_blocks", "saved model", ts=info.get("on"), block=info["block"])
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in info.items() if k in names})


def time_axis(frame: pl.DataFrame, ts: str | None, block: str = "1h") -> tuple[bool, str]:
    """Is ``ts`` a time axis that hour-block splits can use? (yes/no, and why)."""
    if ts is None or ts not in frame.columns:
        return False, f"no time column {ts!r}"
    times = frame.get_column(ts).drop_nulls()
    if times.len() < frame.height or frame.height == 0:
        return False, f"{ts} has {frame.height - times.len()} missing times"
    parts = frame.select(block_split(pl.col(ts), block).alias("p"),
                         (pl.col(ts).dt.epoch("s") // _block_seconds(block)).alias("b"))
    counts = parts.group_by("p").agg(pl.col("b").n_unique().alias("blocks"), pl.len().alias("n"))
    found = {r["p"]: (r["blocks"], r["n"]) for r in counts.iter_rows(named=True)}
    blocks = parts.get_column("b")
    span, occupied = int(blocks.max() - blocks.min()) + 1, blocks.n_unique()
    if occupied < MIN_BLOCK_OCCUPANCY * span:
        return False, (f"{ts} fills {occupied} of the {span} {block} blocks it spans (under "
                       f"{MIN_BLOCK_OCCUPANCY:.0%}: e.g. one run a day is a daily series, "
                       f"not a time axis for {block} blocks)")
    for part in SPLITS:
        blocks, rows = found.get(part, (0, 0))
        if blocks < MIN_BLOCKS_PER_PART:
            return False, (f"{ts} gives the {part} part {blocks} distinct {block} blocks "
                           f"(fewer than {MIN_BLOCKS_PER_PART}: not a time axis for {block} "
                           "blocks, e.g. file times of one export or one row per day)")
        if rows < _NOMINAL[part] / 2 * frame.height:
            return False, (f"{ts} puts {rows} of {frame.height} rows in the {part} part "
                           f"(under half of its {_NOMINAL[part]:.0%})")
    return True, f"{ts} is a time axis: every part holds >= {MIN_BLOCKS_PER_PART} {block} blocks"


def plan_split(
    frame: pl.DataFrame,
    *,
    ts: str | None,
    label: str | None,
    group: str | None = None,
    key: str | None = None,
    block: str = "1h",
    seed: int = 0,
    small_rows: int = SMALL_TABLE_ROWS,
    folds: int = CV_FOLDS,
) -> SplitPlan:
    """The split that fits ``frame`` (see the comment above :class:`SplitRefused`)."""
    has_time, why = time_axis(frame, ts, block)
    groups = group if group and group in frame.columns else None
    if frame.height < small_rows:
        by = (f"{block} blocks of {ts}" if has_time and groups is None else
              f"{groups}" if groups else "row")
        return SplitPlan("cross_validation",
                         f"{frame.height} rows < {small_rows}: {folds}-fold cross-validation "
                         f"grouped by {by}, stratified by {label}; final model refit on all "
                         f"rows ({why})", seed, ts, block, label, groups, key, folds,
                         time_groups=has_time and groups is None)
    if has_time:
        return SplitPlan("time_blocks", why, seed, ts, block, label, groups, key)
    return SplitPlan("stratified", f"{why}; seeded split stratified by {label}"
                     + (f", grouped by {groups}" if groups else ""), seed, ts, block, label,
                     groups, key)


def _unit_quantiles(frame: pl.DataFrame, plan: SplitPlan, ranked: bool = True) -> np.ndarray:
    """Per row, its unit's rank quantile in [0, 1) within the unit's label stratum
    (``ranked``), or its unit's seeded hash as a number in [0, 1)."""
    import hashlib

    if plan.time_groups and plan.ts:
        units = (frame.get_column(plan.ts).dt.epoch("s") // _block_seconds(plan.block))
        units = units.cast(pl.String)
    elif plan.group:
        units = frame.get_column(plan.group).cast(pl.String)
    elif plan.key and plan.key in frame.columns:
        units = frame.get_column(plan.key).cast(pl.String)
    else:
        units = pl.Series([str(r) for r in frame.iter_rows()])
    table = pl.DataFrame({"u": units.fill_null("<null>"),
                          "y": (frame.get_column(plan.label).cast(pl.String).fill_null("<null>")
                                if plan.label else pl.repeat("", frame.height, eager=True))})
    per_unit = table.group_by("u").agg(pl.col("y").mode().sort().first().alias("y"))
    hashes = [int.from_bytes(hashlib.blake2b(f"{plan.seed}:{u}".encode(), digest_size=8)
                             .digest(), "big") for u in per_unit.get_column("u").to_list()]
    units_q = per_unit.with_columns(pl.Series("h", hashes, dtype=pl.UInt64)).with_columns(
        ((pl.col("h").rank("ordinal").over("y") - 0.5) / pl.len().over("y")).alias("q")
        if ranked else (pl.col("h").cast(pl.Float64) / 2.0**64).alias("q"))
    return table.join(units_q.select("u", "q"), on="u", how="left", maintain_order="left")[
        "q"].to_numpy()


def split_parts(frame: pl.DataFrame, plan: SplitPlan) -> pl.Series:
    """``train`` / ``validation`` / ``test`` per row of a hold-out plan."""
    if plan.method == "time_blocks":
        return frame.select(block_split(pl.col(plan.ts), plan.block)).to_series()
    if plan.method != "stratified":
        raise ValueError(f"{plan.method} has folds, not parts: use split_folds")
    q = _unit_quantiles(frame, plan, ranked=False)
    train_end, val_end = HOLDOUT_FRACTIONS[0], HOLDOUT_FRACTIONS[0] + HOLDOUT_FRACTIONS[1]
    return pl.Series("_split", np.where(q < train_end, "train",
                                        np.where(q < val_end, "validation", "test")))


def split_folds(frame: pl.DataFrame, plan: SplitPlan) -> np.ndarray:
    """Fold index (0 .. folds-1) per row of a cross-validation plan."""
    q = _unit_quantiles(frame, plan)
    return np.minimum((q * plan.folds).astype(int), plan.folds - 1)


def split_summary(parts: dict[str, pl.DataFrame], label: str | None) -> dict[str, Any]:
    """Rows and class balance per part (a part is a hold-out part or a CV fold's test)."""
    out: dict[str, Any] = {}
    for name, rows in parts.items():
        entry: dict[str, Any] = {"rows": rows.height}
        if label and label in rows.columns:
            counts = rows.get_column(label).cast(pl.String).value_counts(sort=True)
            entry["classes"] = {str(r[label]): int(r["count"]) for r in counts.iter_rows(
                named=True)}
        out[name] = entry
    return out


def check_split(summary: dict[str, Any], label: str | None, classes: list[str],
                require_classes: bool = True) -> list[str]:
    """Refuse a split with an empty part (or, ``require_classes``, a class missing from a
    part); return notes on what else is thin (a class missing where it is not required)."""
    notes = []
    for part, entry in summary.items():  # an empty part first: the bigger gap
        if entry["rows"] == 0:
            raise SplitRefused(f"the {part} part is empty: add rows (or a time column whose "
                               "times spread over several hours) so every part gets some")
    for part, entry in summary.items():
        present = set(entry.get("classes", {}))
        for name in classes:
            if name not in present:
                message = (f"{label}={name} is absent from the {part} part "
                           f"({entry['rows']} rows): add labelled rows of {label}={name} "
                           "(from several units) so every part holds some")
                if require_classes:
                    raise SplitRefused(message)
                notes.append(message)
    if len(classes) == 1:
        notes.append(f"only one {label} class ({classes[0]}) in the data: classification "
                     "metrics say nothing (NaN), only the regression is judged")
    return notes


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


def class_metrics(truth: np.ndarray, predicted: np.ndarray, classes: list[str],
                  normal: str | None = None) -> dict[str, float]:
    """accuracy, balanced accuracy, recall per class and ``recall_defect`` (any class but
    ``normal`` predicted as not ``normal``); ``classes_present`` says how many classes the
    rows hold: with one, accuracy and balanced accuracy are NaN (a constant model would
    score 1.0 there and it would mean nothing)."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    present = np.unique(truth)
    out: dict[str, float] = {"classes_present": float(present.size), "rows": float(truth.size)}
    one = present.size < 2
    out["accuracy"] = math.nan if one else float((truth == predicted).mean())
    recalls = []
    for i, name in enumerate(classes):
        mine = truth == i
        out[f"recall_{name}"] = float((predicted[mine] == i).mean()) if mine.any() else math.nan
        if mine.any():
            recalls.append(out[f"recall_{name}"])
    out["balanced_accuracy"] = math.nan if one else float(np.mean(recalls))
    if normal is not None and normal in classes:
        k = classes.index(normal)
        defect = truth != k
        out["recall_defect"] = (float((predicted[defect] != k).mean()) if defect.any()
                                else math.nan)
        out[POSITIVES] = float(defect.sum())
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
