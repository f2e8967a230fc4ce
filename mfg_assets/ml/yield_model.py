"""Process yield: regression of ``yield_pct`` and pass/fail classification from parameters.

Input is ``features.process_units``; the inputs are its ``param__<name>`` columns, so a
line with other parameters needs no code change. Rows are split by the plan that fits the
table (:func:`mfg_assets.ml.base.plan_split`): hour blocks of the unit's time where that is
a time axis, else a seeded split stratified by pass/fail; a table under 1,000 units is
cross-validated and the final model refit on every unit. Every evaluation also measures the
baselines (mean / ridge for yield, majority / logistic for pass/fail) on the same rows.

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
from datetime import datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)
from threadpoolctl import threadpool_limits

from mfg_assets.ml import baselines, families, plots
from mfg_assets.ml.base import (
    CV_FOLDS,
    SMALL_TABLE_ROWS,
    SPLITS,
    SplitPlan,
    Trained,
    block_split,
    check_split,
    plan_split,
    read_info,
    sample_params,
    split_folds,
    split_parts,
    split_summary,
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
    "block": "1h",  # hour blocks of a time-axis split
    "split_seed": 0,  # of a stratified split / CV folds: fixed, so versions share test rows
    "group": None,  # a column whose units stay on one side (module, lot); None: per unit
    "small_rows": SMALL_TABLE_ROWS,  # fewer rows: cross-validated, refit on all rows
    "folds": CV_FOLDS,
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


def _plan(features: pl.DataFrame, p: dict[str, Any]) -> SplitPlan:
    """The split that fits this table (same params and data -> same plan, so a champion and
    a challenger are scored on the same rows; the split seed is not the training seed)."""
    return plan_split(features, ts="ts", label="passed", group=p.get("group"), key="unit_id",
                      block=p["block"], seed=p["split_seed"], small_rows=p["small_rows"],
                      folds=p["folds"])


def with_split(features: pl.DataFrame, block: str, plan: SplitPlan | None = None) -> pl.DataFrame:
    """``features`` with a ``_split`` column (time blocks unless a hold-out plan is given)."""
    if plan is None:
        return features.with_columns(block_split(pl.col("ts"), block).alias("_split"))
    return features.with_columns(split_parts(features, plan).alias("_split"))


def unseen_rows(features: pl.DataFrame, info: dict[str, Any]) -> pl.DataFrame:
    """The rows a trained model did not fit on: its validation and test parts, or (refit on
    every row after cross-validation) the rows newer than its training data."""
    plan = SplitPlan.from_info(info["split"])
    if plan.method == "cross_validation":
        until = info["split"].get("trained_until")
        if until is None:
            return features.clear()
        return features.filter(pl.col("ts") > datetime.fromisoformat(until))
    split = with_split(features, plan.block, plan)
    return split.filter(pl.col("_split") != "train").drop("_split")


def train(features: pl.DataFrame, params: dict[str, Any], seed: int = 0) -> Trained:
    p = {**DEFAULT_PARAMS, **params}
    with threadpool_limits(limits=p["threads"], user_api="openmp"):
        return _train(features, p, seed)


def _fit(rows: pl.DataFrame, columns: list[str], p: dict[str, Any], seed: int) -> YieldModel:
    tree = {name: p[name] for name in _TREE_PARAMS}
    regressor = HistGradientBoostingRegressor(random_state=seed, **tree)
    probe = YieldModel(regressor, None, columns)
    x = probe.matrix(rows)
    regressor.fit(x, rows.get_column("yield_pct").to_numpy())
    passed = rows.get_column("passed").to_numpy().astype(bool)
    classifier = None
    if passed.any() and not passed.all():
        classifier = HistGradientBoostingClassifier(random_state=seed, **tree)
        classifier.fit(x, passed)
    return YieldModel(regressor, classifier, columns, constant_pass=bool(passed.all()))


def _train(features: pl.DataFrame, p: dict[str, Any], seed: int) -> Trained:
    columns = parameter_columns(features)
    if not columns:
        raise ValueError("process units have no param__* columns to learn from")
    data = features.filter(pl.col("yield_pct").is_not_null())
    plan = _plan(data, p)
    fit_params = {name: p[name] for name in _TREE_PARAMS}
    split_info: dict[str, Any] = {**plan.to_info(), "on": "ts", "small_rows": p["small_rows"]}
    info: dict[str, Any] = {
        "parameters": columns,
        "split": split_info,
        "fit_params": fit_params,
        "seed": seed,
        "targets": {"regression": "yield_pct", "classification": "passed"},
        "feature_table": FEATURE_TABLE,
    }
    if plan.method == "cross_validation":
        scored, summary, notes = _cross_validate(data, plan, columns, fit_params, seed)
        model = _fit(data, columns, p, seed)  # the final model: every row
        split_info["trained_until"] = data.get_column("ts").max().isoformat()
        metrics = holdout = _metrics(scored)
        # permutation importance on the rows the final model fit: a ranking, not a score
        validation = data
        figures_rows = scored
    else:
        parts = with_split(data, p["block"], plan)
        by_part = {name: parts.filter(pl.col("_split") == name) for name in SPLITS}
        summary = split_summary(by_part, "passed")
        notes = check_split(summary, "passed", _classes(data), require_classes=False)
        model = _fit(by_part["train"], columns, p, seed)
        validation = by_part["validation"]
        metrics = _metrics(_scored(model, by_part["train"], validation, seed))
        figures_rows = _scored(model, by_part["train"], by_part["test"], seed)
        holdout = _metrics(figures_rows)
    split_info.update(parts=summary, notes=notes)
    importances, spread = _importances(model, validation, p["importance_repeats"], seed)
    info.update(importances=importances, n_train=data.height if plan.method ==
                "cross_validation" else summary["train"]["rows"])
    return Trained(
        model=model,
        params=p,
        metrics=metrics,
        holdout_metrics=holdout,
        figures=_figures(figures_rows, importances, spread),
        info=info,
    )


def _classes(rows: pl.DataFrame) -> list[str]:
    # the same spelling as split_summary's class counts ("true" / "false")
    return sorted(rows.get_column("passed").cast(pl.String).unique().to_list())


def _scored(model: YieldModel, fit_rows: pl.DataFrame, rows: pl.DataFrame,
            seed: int) -> dict[str, np.ndarray]:
    """Actual and predicted yield / pass of ``rows``, and the baselines' (fit on
    ``fit_rows``): one dict of equal-length arrays."""
    x_fit, x = model.matrix(fit_rows), model.matrix(rows)
    y_fit = fit_rows.get_column("yield_pct").to_numpy()
    pass_fit = fit_rows.get_column("passed").to_numpy().astype(bool)
    out = {
        "actual": rows.get_column("yield_pct").to_numpy(),
        "passed": rows.get_column("passed").to_numpy().astype(bool),
        "predicted": model.predict(rows) if rows.height else np.empty(0),
        "proba": model.predict_pass_proba(rows) if rows.height else np.empty(0),
    }
    if rows.height and fit_rows.height >= 2:
        for name, pred in baselines.regressor_predictions(x_fit, y_fit, x).items():
            out[f"reg:{name}"] = pred
        for name, pred in baselines.classifier_predictions(x_fit, pass_fit, x, seed).items():
            out[f"cls:{name}"] = pred.astype(bool)
    return out


def _cross_validate(
    data: pl.DataFrame, plan: SplitPlan, columns: list[str], fit_params: dict[str, Any],
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any], list[str]]:
    """Out-of-fold predictions of the model and its baselines, pooled over the folds."""
    folds = split_folds(data, plan)
    parts = {f"fold{k}": data.filter(pl.Series(folds == k)) for k in range(plan.folds)}
    summary = split_summary(parts, "passed")
    notes = check_split(summary, "passed", _classes(data), require_classes=False)
    pooled: dict[str, list[np.ndarray]] = {}
    for k in range(plan.folds):
        fit_rows = data.filter(pl.Series(folds != k))
        model = _fit(fit_rows, columns, {**DEFAULT_PARAMS, **fit_params}, seed)
        for name, values in _scored(model, fit_rows, parts[f"fold{k}"], seed).items():
            pooled.setdefault(name, []).append(values)
    return {k: np.concatenate(v) for k, v in pooled.items()}, summary, notes


def _metrics(scored: dict[str, np.ndarray]) -> dict[str, float]:
    """r2 / mae of yield and pass/fail metrics of the model and of every baseline."""
    actual, passed = scored["actual"], scored["passed"]
    out = baselines.regression_metrics(actual, scored["predicted"])
    out.update(_pass_metrics(passed, scored["proba"] >= 0.5, scored["proba"]))
    for name, values in scored.items():
        if name.startswith("reg:"):
            out.update({baselines.key(name[4:], m): v for m, v in
                        baselines.regression_metrics(actual, values).items()})
        elif name.startswith("cls:"):
            out.update({baselines.key(name[4:], m): v for m, v in
                        _pass_metrics(passed, values, None).items()
                        if m not in ("auroc", "pass_fail_classes")})
    out["rows"] = float(actual.size)
    return out


def _pass_metrics(passed: np.ndarray, predicted: np.ndarray,
                  proba: np.ndarray | None) -> dict[str, float]:
    """Pass/fail metrics; with one class among the rows they are NaN (``pass_fail_classes``
    says so): accuracy 1.0 and F1 0.0 of a constant guess would mean nothing."""
    classes = float(np.unique(passed).size)
    if classes < 2:
        return {"accuracy": math.nan, "balanced_accuracy": math.nan, "f1": math.nan,
                "recall_fail": math.nan, "auroc": math.nan, "pass_fail_classes": classes}
    return {
        "accuracy": float(accuracy_score(passed, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(passed, predicted)),
        "f1": float(f1_score(passed, predicted, zero_division=0)),
        "recall_fail": float((~predicted[~passed]).mean()),
        "auroc": float(roc_auc_score(passed, proba)) if proba is not None else math.nan,
        "pass_fail_classes": classes,
    }


def evaluate(model: YieldModel, features: pl.DataFrame, info: dict[str, Any]) -> dict[str, float]:
    """r2/mae of yield and pass/fail metrics, with the baselines', on the hold-out of
    ``features``: the test part of the split that fits them (planned again from the rows,
    so champion and challenger share it), or cross-validation of the model's own
    parameters on a small table."""
    data = features.filter(pl.col("yield_pct").is_not_null())
    saved = info["split"]
    # A hold-out plan is kept (a row's part depends on that row only: a recent window or a
    # newer table gets the same parts for champion and challenger); a cross-validated model
    # is cross-validated again on these rows with its own parameters.
    plan = SplitPlan.from_info(saved)
    if plan.method == "cross_validation":
        if data.height < plan.folds * 2:
            return _metrics(_scored(model, data.clear(), data.clear(), 0))
        fit = info.get("fit_params") or {n: DEFAULT_PARAMS[n] for n in _TREE_PARAMS}
        scored, _, _ = _cross_validate(data, plan, model.columns, fit, info.get("seed", 0))
        return _metrics(scored)
    parts = with_split(data, plan.block, plan)
    return _metrics(_scored(model, parts.filter(pl.col("_split") == "train"),
                            parts.filter(pl.col("_split") == "test"), info.get("seed", 0)))


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
    scored: dict[str, np.ndarray], importances: dict[str, float], spread: dict[str, float]
) -> dict[str, bytes]:
    if scored["actual"].size < 2:
        return {}
    figures = {
        "predicted_vs_actual.png": plots.scatter(
            scored["actual"], scored["predicted"], "Yield, held-out units", "yield %",
        )
    }
    if importances:
        figures["feature_importance.png"] = plots.bar_chart(
            importances, spread, "Permutation importance", "drop in R²"
        )
    matrix = confusion_matrix(scored["passed"], scored["proba"] >= 0.5, labels=[False, True])
    figures["confusion_matrix.png"] = plots.confusion_matrix(
        matrix, ["fail", "pass"], "Pass/fail, held-out units"
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
