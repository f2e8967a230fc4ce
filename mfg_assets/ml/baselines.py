"""Simple baselines, measured in the same run on the same rows as the model they judge.

A model is only worth shipping when it beats what anyone could have had without it:

- classifiers: the majority class (the "always ok" guess that scores 90 % accuracy on a
  line with 10 % defects), and a logistic regression on standardized features (on
  downscaled pixels for images, :func:`downscale`);
- regressors: the training mean, and a ridge regression on standardized features.

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
