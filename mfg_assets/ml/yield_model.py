"""Process yield: regression of ``yield_pct`` and pass/fail classification from parameters.

Input is ``features.process_units``; the inputs are its ``param__<name>`` columns, so a
line with other parameters needs no code change. Rows are split by
:func:`mfg_assets.ml.base.block_split` on the unit's time.

Why scikit-learn's HistGradientBoosting: yield is a smooth but strongly non-linear function
of a handful of tabular set points (optima, interactions such as heat input = V * I /
speed, saturating losses); gradient-boosted trees learn that without feature engineering
or scaling, handle missing parameters natively, train in a second on tens of thousands of
units on two cores, and scikit-learn is a well-kept, dependency-light library with a
stable pickle format and an MLflow flavour. Permutation importance (model-agnostic,
measured on validation units) says which parameters drive the prediction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)
from threadpoolctl import threadpool_limits

from mfg_assets.ml import families, plots
from mfg_assets.ml.base import (
    Trained,
    block_split,
    read_info,
    sample_params,
    write_info,
)
from mfg_assets.ml.features import parameter_columns

_SPEC = families.spec('process_yield')  # metrics, floors, feature table: the registry
FAMILY = _SPEC.model
FEATURE_TABLE = _SPEC.feature_table
MODEL_FILE = "model.joblib"

DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_iter": 300,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 20,
    "l2_regularization": 0.0,
    "block": "1h",
    "importance_repeats": 5,
    # OpenMP threads for the trees: on a shared two-core machine more threads than free
    # cores make HistGradientBoosting spin and slow down tenfold.
    "threads": 1,
}
_GRID: dict[str, list[Any]] = {
    "learning_rate": [0.03, 0.05, 0.1, 0.2],
    "max_iter": [150, 300, 600],
    "max_leaf_nodes": [15, 31, 63],
    "min_samples_leaf": [10, 20, 50],
    "l2_regularization": [0.0, 0.1, 1.0],
}
_TREE_PARAMS = (
    "learning_rate",
    "max_iter",
    "max_leaf_nodes",
    "min_samples_leaf",
    "l2_regularization",
)


def search_space(budget: int, seed: int) -> list[dict[str, Any]]:
    return sample_params(np.random.default_rng(seed), _GRID, DEFAULT_PARAMS, budget)


class YieldModel:
    """A yield regressor and a pass/fail classifier over the same parameter columns."""

    def __init__(
        self,
        regressor: HistGradientBoostingRegressor,
        classifier: HistGradientBoostingClassifier | None,
        columns: list[str],
        constant_pass: bool = True,
    ) -> None:
        self.regressor = regressor
        self.classifier = classifier  # None when every training unit had the same outcome
        self.columns = columns
        self.constant_pass = constant_pass

    def matrix(self, frame: Any) -> np.ndarray:
        """Parameter matrix from a polars or pandas frame (a missing column is all-NaN)."""
        if not isinstance(frame, pl.DataFrame):
            frame = pl.from_pandas(frame)
        exprs = [
            (pl.col(c) if c in frame.columns else pl.lit(None)).cast(pl.Float64).alias(c)
            for c in self.columns
        ]
        return frame.select(exprs).fill_null(float("nan")).to_numpy()

    def predict(self, frame: Any) -> np.ndarray:
        """Predicted yield in percent."""
        with threadpool_limits(limits=1, user_api="openmp"):
            return self.regressor.predict(self.matrix(frame))

    def predict_pass_proba(self, frame: Any) -> np.ndarray:
        if self.classifier is None:
            return np.full(len(frame), float(self.constant_pass))
        with threadpool_limits(limits=1, user_api="openmp"):
            return self.classifier.predict_proba(self.matrix(frame))[:, 1]

    def predict_pass(self, frame: Any) -> np.ndarray:
        return self.predict_pass_proba(frame) >= 0.5


def with_split(features: pl.DataFrame, block: str) -> pl.DataFrame:
    return features.with_columns(block_split(pl.col("ts"), block).alias("_split"))


def unseen_rows(features: pl.DataFrame, info: dict[str, Any]) -> pl.DataFrame:
    """The rows a trained model did not fit on (its validation and test blocks)."""
    split = with_split(features, info["split"]["block"])
    return split.filter(pl.col("_split") != "train").drop("_split")


def train(features: pl.DataFrame, params: dict[str, Any], seed: int = 0) -> Trained:
    p = {**DEFAULT_PARAMS, **params}
    with threadpool_limits(limits=p["threads"], user_api="openmp"):
        return _train(features, p, seed)


def _train(features: pl.DataFrame, p: dict[str, Any], seed: int) -> Trained:
    columns = parameter_columns(features)
    if not columns:
        raise ValueError("process units have no param__* columns to learn from")
    data = with_split(features.filter(pl.col("yield_pct").is_not_null()), p["block"])
    fit_rows = data.filter(pl.col("_split") == "train")
    tree = {name: p[name] for name in _TREE_PARAMS}
    regressor = HistGradientBoostingRegressor(random_state=seed, **tree)
    probe = YieldModel(regressor, None, columns)
    x = probe.matrix(fit_rows)
    regressor.fit(x, fit_rows.get_column("yield_pct").to_numpy())
    passed = fit_rows.get_column("passed").to_numpy().astype(bool)
    classifier = None
    if passed.any() and not passed.all():
        classifier = HistGradientBoostingClassifier(random_state=seed, **tree)
        classifier.fit(x, passed)
    model = YieldModel(regressor, classifier, columns, constant_pass=bool(passed.all()))

    validation = data.filter(pl.col("_split") == "validation")
    test = data.filter(pl.col("_split") == "test")
    importances, spread = _importances(model, validation, p["importance_repeats"], seed)
    info = {
        "parameters": columns,
        "importances": importances,
        "n_train": fit_rows.height,
        "split": {"method": "block", "block": p["block"], "on": "ts"},
        "targets": {"regression": "yield_pct", "classification": "passed"},
        "feature_table": FEATURE_TABLE,
    }
    return Trained(
        model=model,
        params=p,
        metrics=_metrics(model, validation),
        holdout_metrics=_metrics(model, test),
        figures=_figures(model, validation, importances, spread),
        info=info,
    )


def _metrics(model: YieldModel, rows: pl.DataFrame) -> dict[str, float]:
    if rows.height < 2:
        return {name: math.nan for name in ("r2", "mae", "accuracy", "f1", "auroc")}
    actual = rows.get_column("yield_pct").to_numpy()
    predicted = model.predict(rows)
    passed = rows.get_column("passed").to_numpy().astype(bool)
    proba = model.predict_pass_proba(rows)
    both = passed.any() and not passed.all()
    return {
        "r2": float(r2_score(actual, predicted)),
        "mae": float(mean_absolute_error(actual, predicted)),
        "accuracy": float(accuracy_score(passed, proba >= 0.5)),
        "f1": float(f1_score(passed, proba >= 0.5, zero_division=0)),
        "auroc": float(roc_auc_score(passed, proba)) if both else math.nan,
    }


def evaluate(model: YieldModel, features: pl.DataFrame, info: dict[str, Any]) -> dict[str, float]:
    """r2/mae of yield and accuracy/f1/auroc of pass, on the test blocks of ``features``."""
    data = with_split(features.filter(pl.col("yield_pct").is_not_null()), info["split"]["block"])
    return _metrics(model, data.filter(pl.col("_split") == "test"))


def _importances(
    model: YieldModel, rows: pl.DataFrame, repeats: int, seed: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Drop in validation R² when a parameter is shuffled (mean, std over repeats)."""
    if rows.height < 10:
        return {}, {}
    result = permutation_importance(
        model.regressor,
        model.matrix(rows),
        rows.get_column("yield_pct").to_numpy(),
        n_repeats=repeats,
        random_state=seed,
        scoring="r2",
    )
    names = [c.removeprefix("param__") for c in model.columns]
    mean = {n: float(v) for n, v in zip(names, result.importances_mean, strict=True)}
    std = {n: float(v) for n, v in zip(names, result.importances_std, strict=True)}
    return mean, std


def _figures(
    model: YieldModel, rows: pl.DataFrame, importances: dict[str, float], spread: dict[str, float]
) -> dict[str, bytes]:
    if rows.height < 2:
        return {}
    figures = {
        "predicted_vs_actual.png": plots.scatter(
            rows.get_column("yield_pct").to_numpy(),
            model.predict(rows),
            "Yield, validation units",
            "yield %",
        )
    }
    if importances:
        figures["feature_importance.png"] = plots.bar_chart(
            importances, spread, "Permutation importance (validation)", "drop in R²"
        )
    passed = rows.get_column("passed").to_numpy().astype(bool)
    matrix = confusion_matrix(passed, model.predict_pass(rows), labels=[False, True])
    figures["confusion_matrix.png"] = plots.confusion_matrix(
        matrix, ["fail", "pass"], "Pass/fail, validation units"
    )
    return figures


def save(trained: Trained, path: Path) -> None:
    path = Path(path)
    write_info(path, trained.info, trained.params)
    joblib.dump(trained.model, path / MODEL_FILE)


def load(path: Path) -> tuple[YieldModel, dict[str, Any]]:
    path = Path(path)
    info, _ = read_info(path)
    return joblib.load(path / MODEL_FILE), info
