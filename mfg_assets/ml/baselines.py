"""Simple baselines, measured in the same run on the same rows as the model they judge.

A model is only worth shipping when it beats what anyone could have had without it:

- classifiers: the majority class (the "always ok" guess that scores 90 % accuracy on a
  line with 10 % defects), and a logistic regression on standardized features (on
  downscaled pixels for images, :func:`downscale`);
- regressors: the training mean, and a ridge regression on standardized features;
- detectors that score rows (sensor anomaly, edge health): a distance from the training
  mean in standard deviations (:func:`zscore_scores`), a constant (the majority class) and a
  logistic regression on standardized features (:func:`logistic_scores`), each thresholded
  the way the model's own scores are;
- forecasts: the last known value, the mean of the known history and the value one season
  earlier (:func:`naive_forecasts`), over the same horizon as the model's.

Missing values are imputed with the training median (the linear models need numbers).
Metrics are reported under ``baseline.<name>.<metric>``, next to the model's own, so the
gate (:func:`mfg_assets.ml.gate.baseline_failures`) compares like with like and MLflow
shows them in the same run. Plain functions; no Dagster, no MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

PREFIX = "baseline."
CLASSIFIERS = ("majority", "logistic")
REGRESSORS = ("mean", "ridge")
FORECASTS = ("last", "mean", "seasonal")


def key(baseline: str, metric: str) -> str:
    return f"{PREFIX}{baseline}.{metric}"


def of(metrics: dict[str, float], metric: str) -> dict[str, float]:
    """baseline name -> its value of ``metric`` in a metrics dict."""
    suffix = f".{metric}"
    return {k.removeprefix(PREFIX).removesuffix(suffix): v for k, v in metrics.items()
            if k.startswith(PREFIX) and k.endswith(suffix)
            and "." not in k.removeprefix(PREFIX).removesuffix(suffix)}


def _linear(model: object) -> object:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # keep_empty_features: an all-missing column in a small fold stays a (zero) column
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                         StandardScaler(), model)


def regressor_predictions(x_train: np.ndarray, y_train: np.ndarray,
                          x_test: np.ndarray) -> dict[str, np.ndarray]:
    """Baseline name -> predictions on ``x_test``."""
    from sklearn.linear_model import RidgeCV

    ridge = _linear(RidgeCV(alphas=np.logspace(-2, 3, 12)))
    ridge.fit(x_train, y_train)  # type: ignore[attr-defined]
    return {"mean": np.full(len(x_test), float(np.mean(y_train))),
            "ridge": np.asarray(ridge.predict(x_test), dtype=float)}  # type: ignore[attr-defined]


def classifier_predictions(x_train: np.ndarray, y_train: np.ndarray,
                           x_test: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Baseline name -> predicted class (the training labels' values) on ``x_test``."""
    from sklearn.linear_model import LogisticRegression

    values, counts = np.unique(y_train, return_counts=True)
    majority = values[int(np.argmax(counts))]
    out = {"majority": np.full(len(x_test), majority)}
    if values.size < 2:
        out["logistic"] = out["majority"]
        return out
    # balanced class weights: a linear model that also just says "ok" would be a weak bar
    logistic = _linear(LogisticRegression(max_iter=500, class_weight="balanced",
                                          random_state=seed))
    logistic.fit(x_train, y_train)  # type: ignore[attr-defined]
    out["logistic"] = np.asarray(logistic.predict(x_test))  # type: ignore[attr-defined]
    return out


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, r2_score

    if len(actual) < 2:
        return {"r2": math.nan, "mae": math.nan}
    return {"r2": float(r2_score(actual, predicted)),
            "mae": float(mean_absolute_error(actual, predicted))}


def measured(predictions: dict[str, np.ndarray], actual: np.ndarray,
             metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]) -> dict[str, float]:
    """``baseline.<name>.<metric>`` for each baseline's predictions."""
    return {key(name, metric): value for name, predicted in predictions.items()
            for metric, value in metrics(actual, predicted).items()}


def downscale(images: np.ndarray, side: int = 8) -> np.ndarray:
    """(n, 1, s, s) images -> (n, side*side) block means: the pixels a linear baseline sees."""
    n, _, s, _ = images.shape
    side = min(side, s)
    factor = max(1, s // side)
    cut = images[:, 0, : factor * side, : factor * side]
    pooled = cut.reshape(n, side, factor, side, factor).mean(axis=(2, 4))
    return pooled.reshape(n, side * side)


# -- detectors: scores thresholded like the model's ------------------------------------


def zscore_scores(x_train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Mean squared distance of each row of ``x`` from the training rows' mean, in training
    standard deviations (missing values count as the mean): what anyone gets by watching
    each sensor for departures from its normal level."""
    x_train, x = np.asarray(x_train, dtype=float), np.asarray(x, dtype=float)
    if x.shape[0] == 0 or x.shape[1] == 0:
        return np.zeros(x.shape[0])
    with np.errstate(all="ignore"):  # an all-missing training column: mean/std NaN
        mean = np.nanmean(x_train, axis=0) if len(x_train) else np.zeros(x.shape[1])
        std = np.nanstd(x_train, axis=0) if len(x_train) else np.ones(x.shape[1])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-9), std, 1.0)
    z = np.nan_to_num((x - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)
    return (z**2).mean(axis=1)


def logistic_scores(x_train: np.ndarray, y_train: np.ndarray, x_eval: list[np.ndarray],
                    seed: int = 0) -> list[np.ndarray] | None:
    """P(positive) of a class-weighted logistic regression on standardized features, fit on
    ``(x_train, y_train)``, for each matrix of ``x_eval``; None when the training labels
    hold one class only (nothing to fit: the baseline is then the majority class)."""
    from sklearn.linear_model import LogisticRegression

    y_train = np.asarray(y_train, dtype=bool)
    if len(y_train) < 2 or y_train.all() or not y_train.any():
        return None
    logistic = _linear(LogisticRegression(max_iter=500, class_weight="balanced",
                                          random_state=seed))
    logistic.fit(x_train, y_train)  # type: ignore[attr-defined]
    return [np.asarray(logistic.predict_proba(x)[:, 1], dtype=float)  # type: ignore[attr-defined]
            if len(x) else np.empty(0) for x in x_eval]


def binary(name: str, truth: np.ndarray, flag: np.ndarray,
           score: np.ndarray | None) -> dict[str, float]:
    """``baseline.<name>.<metric>`` of precision, recall, f1, auroc and false alarm rate."""
    from mfg_assets.ml.base import binary_metrics

    truth, flag = np.asarray(truth, dtype=bool), np.asarray(flag, dtype=bool)
    if truth.size == 0:
        return {}
    out = binary_metrics(truth, flag, score)
    out["false_alarm_rate"] = float(flag[~truth].mean()) if (~truth).any() else math.nan
    return {key(name, metric): value for metric, value in out.items()}


# -- forecasts ---------------------------------------------------------------------------


def naive_forecasts(history_ds: np.ndarray, history_y: np.ndarray, ds: np.ndarray,
                    season: np.timedelta64 | None) -> dict[str, np.ndarray]:
    """Baseline name -> forecast at times ``ds`` from a series known up to its last point:
    ``last`` (the last known value), ``mean`` (of the known history) and ``seasonal`` (the
    known value one, two... seasons before each time; NaN everywhere when the history is
    shorter than one season or ``season`` is None)."""
    history_ds = np.asarray(history_ds, dtype="datetime64[us]")
    history_y = np.asarray(history_y, dtype=float)
    ds = np.asarray(ds, dtype="datetime64[us]")
    order = np.argsort(history_ds)
    history_ds, history_y = history_ds[order], history_y[order]
    n = len(ds)
    if len(history_y) == 0:
        return {name: np.full(n, math.nan) for name in FORECASTS}
    out = {"last": np.full(n, history_y[-1]), "mean": np.full(n, float(history_y.mean()))}
    seasonal = np.full(n, math.nan)
    if season is not None and history_ds[-1] - history_ds[0] >= season:
        known = dict(zip(history_ds.tolist(), history_y.tolist(), strict=True))
        for i, t in enumerate(ds):
            back = t - season
            while back > history_ds[-1]:  # beyond one season ahead: the season before
                back -= season
            # the same time of day one season back, else the nearest known point before it
            found = known.get(back.tolist())
            if found is None:
                at = int(np.searchsorted(history_ds, back, side="right")) - 1
                found = history_y[max(at, 0)]
            seasonal[i] = found
    out["seasonal"] = seasonal
    return out
