"""Failure forecasting per machine and sensor (Prophet, or a naive forecaster where one
is clearly better), for predictive maintenance.

Input is ``features.sensor_windows``: each ``<sensor>__mean`` is averaged per machine
into an hourly series (``freq``). Held-out tails give MAPE and the coverage of the
prediction interval; the forecast beyond the fitted data says when the series is
expected to cross its limit (``limits[sensor]``, or ``mean + limit_sigma * std`` of the
series' own history when no limit is configured).

Each series is cut into train / validation / test by time (the last ``holdout_frac`` is
test, the ``holdout_frac`` before it validation): a fit on train scores validation (the
search's metric), a refit on train + validation scores test (promotion's metric) and is
the model kept. It never sees the test tail, so ``evaluate`` on any later snapshot of the
table scores data the model has not seen.

Every evaluation also scores naive forecasts of the same held-out points from the same
known history (:func:`baseline_metrics`: the last known value, the known mean, and the
value one day earlier where a day of history is known); the gate asks the model for a
lower sMAPE than each of them.

Each series keeps the forecaster that did best on its validation part (:func:`choose`,
scored from the train part only, never on the test tail): Prophet, the mean of Prophet
and the seasonal-naive forecast (``prophet_seasonal``), or a naive forecaster (last value,
mean, value a day earlier). A validation part is a few hours, often in another shift or
day type than the test tail, so a naive forecaster replaces the Prophet-based ones only
where it cuts their validation sMAPE by ``naive_margin`` (half by default): picking the
plain validation winner made the test sMAPE worse on all three simulator histories
(24/48/72 h). Every method's interval is at least +/- the ``interval_width`` quantile of
its absolute validation errors (the naive ones have no other), so coverage still means
something. ``info["methods"]`` names each series' method and the holdout metrics count
them (``series.<method>``). Prophet fits a daily seasonality (Fourier order
``daily_fourier_order``, 12: breaks and shift changes are steps) once its history spans a
day.

Series are independent, so they are fitted in a process pool (``workers``); with
``workers <= 1`` they are fitted one after another in this process (the benchmark compares
both). Prophet is kept quiet (cmdstanpy logging) and quick (MAP fit, few uncertainty
samples).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from mfg_assets.ml import baselines, families, plots
from mfg_assets.ml.base import Trained, read_info, sample_params, write_info
from mfg_assets.ml.features import SEP, sensors_of

# sMAPE, not MAPE, ranks models: a machine stopped for repair reads ~0 kW and ~0 mm/s, and
# one such hour makes MAPE explode (both are reported).
_SPEC = families.spec('failure_forecast')  # metrics, floors, feature table: the registry
FAMILY = _SPEC.model
FEATURE_TABLE = _SPEC.feature_table
MODELS_DIR = "series"

DEFAULT_PARAMS: dict[str, Any] = {
    "freq": "1h",
    "sensors": None,  # None: every sensor in the data
    "holdout_frac": 0.2,
    "min_points": 12,  # fewer training points than this: the series is skipped
    "horizon_h": 24.0,
    "limits": {},  # sensor -> absolute upper limit
    "limit_sigma": 4.0,
    "interval_width": 0.9,
    "uncertainty_samples": 200,
    "changepoint_prior_scale": 0.05,
    "seasonality_prior_scale": 10.0,
    "seasonality_mode": "additive",
    # "auto": on once the fitted history spans a day. Prophet's own rule waits for two,
    # which left the simulator's 48 h history without one; with it (and 12 Fourier terms)
    # Prophet alone went from sMAPE 0.26 to 0.18 on that history's test tail.
    "daily_seasonality": "auto",
    "daily_fourier_order": 12,  # 24 terms: hour-of-day steps (breaks, shifts), not a sine
    "weekly_seasonality": False,
    "methods": ["prophet", "prophet_seasonal", "last", "mean", "seasonal"],  # candidates
    "naive_margin": 0.5,  # a naive method must cut the best Prophet one's validation sMAPE by this
    "workers": 2,
}
_GRID: dict[str, list[Any]] = {
    "changepoint_prior_scale": [0.01, 0.05, 0.2, 0.5],
    "seasonality_prior_scale": [1.0, 10.0],
    "seasonality_mode": ["additive", "multiplicative"],
    "daily_seasonality": ["auto", True],
}
_PROPHET_ARGS = (
    "interval_width",
    "uncertainty_samples",
    "changepoint_prior_scale",
    "seasonality_prior_scale",
    "seasonality_mode",
    "weekly_seasonality",
)
# The season of the seasonal-naive forecaster and baseline: a day (shifts, ambient temperature).
SEASON = "24h"
PROPHET = "prophet"
COMBINED = "prophet_seasonal"  # the mean of Prophet's and the seasonal-naive forecast
PROPHET_BASED = (PROPHET, COMBINED)
METHODS = (*PROPHET_BASED, *baselines.FORECASTS)


def search_space(budget: int, seed: int) -> list[dict[str, Any]]:
    return sample_params(np.random.default_rng(seed), _GRID, DEFAULT_PARAMS, budget)


def quiet() -> None:
    """Prophet and cmdstanpy log every fit at INFO; keep them to warnings.

    cmdstanpy installs its own INFO handler (and resets its level to DEBUG) unless its
    logger already has a handler, so give it a null one first.
    """
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())
        logger.setLevel(logging.WARNING)


# -- series ------------------------------------------------------------------------------------


def series(
    features: pl.DataFrame, freq: str = "1h", sensors: list[str] | None = None
) -> pl.DataFrame:
    """Long frame (machine_id, sensor, ds, y): per-machine ``freq`` means of window means."""
    names = [s for s in sensors_of(features) if sensors is None or s in sensors]
    columns = [f"{s}{SEP}mean" for s in names]
    if not columns:
        return pl.DataFrame(
            schema={
                "machine_id": pl.String,
                "sensor": pl.String,
                "ds": pl.Datetime("us"),
                "y": pl.Float64,
            }
        )
    return (
        features.select("machine_id", "window_start", *columns)
        .with_columns(pl.col("window_start").dt.truncate(freq).alias("ds"))
        .unpivot(index=["machine_id", "ds"], on=columns, variable_name="sensor", value_name="y")
        .drop_nulls("y")
        .with_columns(pl.col("sensor").str.strip_suffix(f"{SEP}mean"))
        .group_by("machine_id", "sensor", "ds")
        .agg(pl.col("y").mean())
        # Prophet wants naive timestamps: keep UTC wall time
        .with_columns(pl.col("ds").dt.replace_time_zone(None))
        .sort("machine_id", "sensor", "ds")
    )


def split_tail(frame: pl.DataFrame, holdout_frac: float) -> pl.DataFrame:
    """``_part`` per point: the last ``holdout_frac`` of each series is ``test``, the
    ``holdout_frac`` before it ``validation``, the rest ``train`` (at least one point each)."""
    n = pl.len().over("machine_id", "sensor")
    rank = pl.int_range(pl.len()).over("machine_id", "sensor")
    n_hold = (n * holdout_frac).ceil().clip(lower_bound=1)
    part = (
        pl.when(rank >= n - n_hold)
        .then(pl.lit("test"))
        .when(rank >= n - 2 * n_hold)
        .then(pl.lit("validation"))
        .otherwise(pl.lit("train"))
    )
    return frame.sort("machine_id", "sensor", "ds").with_columns(part.alias("_part"))


def series_key(machine_id: str, sensor: str) -> str:
    return f"{machine_id}/{sensor}"


# -- the model ---------------------------------------------------------------------------------


@dataclass
class Method:
    """How one series is forecast: ``name`` (one of :data:`METHODS`), the known history the
    naive forecasts start from, and the half-width of their interval."""

    name: str
    ds: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="datetime64[us]"))
    y: np.ndarray = field(default_factory=lambda: np.empty(0))
    halfwidth: float = math.nan

    def to_json(self) -> dict[str, Any]:
        if self.name == PROPHET:
            return {"name": self.name, "halfwidth": self.halfwidth}
        return {"name": self.name, "halfwidth": self.halfwidth,
                "ds": [str(t) for t in self.ds], "y": [float(v) for v in self.y]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Method:
        if doc["name"] == PROPHET:
            return cls(PROPHET, halfwidth=float(doc.get("halfwidth", math.nan)))
        return cls(doc["name"], np.asarray(doc["ds"], dtype="datetime64[us]"),
                   np.asarray(doc["y"], dtype=float), float(doc["halfwidth"]))


class ForecastModel:
    """Fitted Prophet models by ``machine_id/sensor`` with each series' limit and method
    (a series without one is forecast by its Prophet model, as models saved before
    methods existed are)."""

    def __init__(self, models: dict[str, Any], limits: dict[str, float],
                 methods: dict[str, Method] | None = None) -> None:
        self.models = models
        self.limits = limits
        self.methods = methods or {}

    def method(self, key: str) -> str:
        return self.methods[key].name if key in self.methods else PROPHET

    def predict(self, key: str, ds: pd.Series | list[Any]) -> pd.DataFrame:
        """ds, yhat, yhat_lower, yhat_upper for the series ``key``, by its method."""
        times = pd.DatetimeIndex(pd.to_datetime(ds))
        method = self.methods.get(key, Method(PROPHET))
        if method.name == PROPHET:
            fc = self._prophet(key, times)
            if math.isfinite(method.halfwidth):  # at least as wide as its validation errors
                fc["yhat_lower"] = np.minimum(fc["yhat_lower"], fc["yhat"] - method.halfwidth)
                fc["yhat_upper"] = np.maximum(fc["yhat_upper"], fc["yhat"] + method.halfwidth)
            return fc
        guess = baselines.naive_forecasts(method.ds, method.y,
                                          times.to_numpy().astype("datetime64[us]"), _season())
        if method.name == COMBINED:
            yhat = (self._prophet(key, times)["yhat"].to_numpy() + guess["seasonal"]) / 2
        else:
            yhat = guess[method.name]
        return pd.DataFrame({"ds": times, "yhat": yhat, "yhat_lower": yhat - method.halfwidth,
                             "yhat_upper": yhat + method.halfwidth})

    def _prophet(self, key: str, times: pd.DatetimeIndex) -> pd.DataFrame:
        """Prophet samples its intervals from numpy's global generator: seed it for the call
        (and put the caller's state back) so the same model gives the same intervals."""
        state = np.random.get_state()
        np.random.seed(0)
        try:
            fc = self.models[key].predict(pd.DataFrame({"ds": times}))
        finally:
            np.random.set_state(state)
        return fc[["ds", "yhat", "yhat_lower", "yhat_upper"]]

    def time_to_limit(self, key: str, start: Any, horizon_h: float, freq: str = "1h") -> dict:
        """Hours from ``start`` until the forecast (and its upper bound) reaches the limit."""
        ds = pd.date_range(pd.Timestamp(start), periods=_steps(horizon_h, freq) + 1, freq=freq)
        fc = self.predict(key, ds[1:])
        limit = self.limits[key]
        hours = (fc["ds"] - pd.Timestamp(start)).dt.total_seconds().to_numpy() / 3600.0
        return {
            "limit": limit,
            "hours_to_limit": _first_at_or_above(hours, fc["yhat"].to_numpy(), limit),
            "hours_to_limit_upper": _first_at_or_above(hours, fc["yhat_upper"].to_numpy(), limit),
        }


def _steps(horizon_h: float, freq: str) -> int:
    return max(1, round(horizon_h * 3600 / pd.Timedelta(freq).total_seconds()))


def _season() -> np.timedelta64:
    return np.timedelta64(pd.Timedelta(SEASON).to_timedelta64(), "us")


def _smape(y: np.ndarray, yhat: np.ndarray) -> float:
    """Symmetric MAPE (the family's primary metric and the method choice's score)."""
    return float(np.mean(2 * np.abs(y - yhat) / np.maximum(np.abs(y) + np.abs(yhat), 1e-9)))


def choose(train_ds: np.ndarray, train_y: np.ndarray, val_ds: np.ndarray, val_y: np.ndarray,
           prophet_yhat: np.ndarray, p: dict[str, Any]) -> tuple[str, float, dict[str, float]]:
    """(method, interval half-width, validation sMAPE per candidate) for one series.

    Every candidate of ``p["methods"]`` forecasts the validation points from the train
    part (``prophet_yhat``: the Prophet fit on it). The best Prophet-based one is kept
    unless a naive one has a validation sMAPE below ``1 - naive_margin`` times its own.
    The half-width is the ``interval_width`` quantile of the chosen method's absolute
    validation errors (Prophet's own interval is widened to it where narrower: with 24
    daily terms on a day or two of points it fits the history closely and its interval,
    drawn from the in-sample noise, covered 39 % of a 48 h simulator tail at nominal 90 %).
    """
    guess = baselines.naive_forecasts(train_ds, train_y, val_ds, _season())
    forecasts = {PROPHET: prophet_yhat, COMBINED: (prophet_yhat + guess["seasonal"]) / 2, **guess}
    scores = {name: _smape(val_y, forecasts[name]) for name in p["methods"]
              if name in forecasts and np.isfinite(forecasts[name]).all()}
    rich = [name for name in scores if name in PROPHET_BASED]
    simple = [name for name in scores if name not in PROPHET_BASED]
    if not scores:  # nothing could forecast the validation points: Prophet, unjudged
        return PROPHET, math.nan, scores
    best_rich = min(rich, key=scores.__getitem__) if rich else None
    best_simple = min(simple, key=scores.__getitem__) if simple else None
    if best_rich is None or (best_simple is not None and scores[best_simple]
                             < (1 - p["naive_margin"]) * scores[best_rich]):
        chosen = str(best_simple)
    else:
        chosen = best_rich
    errors = np.abs(val_y - forecasts[chosen])
    # "higher": with a handful of validation points, the interval errs on the wide side
    return chosen, float(np.quantile(errors, p["interval_width"], method="higher")), scores


def _first_at_or_above(hours: np.ndarray, values: np.ndarray, limit: float) -> float | None:
    hits = np.flatnonzero(values >= limit)
    return float(hours[hits[0]]) if hits.size else None


# -- fitting (runs in worker processes) --------------------------------------------------------


def _fit_one(task: tuple[str, list[Any], list[float], dict[str, Any]]) -> tuple[str, str]:
    """Fit one series; returns (key, serialised model). Module-level so it pickles."""
    from prophet import Prophet
    from prophet.serialize import model_to_json

    quiet()
    key, ds, y, p = task
    times = pd.to_datetime(pd.Series(ds))
    model = Prophet(yearly_seasonality=False, daily_seasonality=False,
                    **{k: p[k] for k in _PROPHET_ARGS})
    daily = p["daily_seasonality"]
    if daily == "auto":  # one full cycle seen
        daily = times.max() - times.min() >= pd.Timedelta(SEASON)
    if daily:
        model.add_seasonality("daily", period=1, fourier_order=p["daily_fourier_order"],
                              prior_scale=p["seasonality_prior_scale"],
                              mode=p["seasonality_mode"])
    model.fit(pd.DataFrame({"ds": times, "y": y}))
    return key, model_to_json(model)


def fit_all(tasks: list[tuple[str, list[Any], list[float], dict[str, Any]]], workers: int) -> dict:
    """key -> fitted Prophet; in a process pool when ``workers > 1``."""
    from prophet.serialize import model_from_json

    quiet()
    if workers > 1 and len(tasks) > 1:
        # spawn, not fork: the parent may hold polars/torch thread pools.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            fitted = list(pool.map(_fit_one, tasks))
    else:
        fitted = [_fit_one(task) for task in tasks]
    return {key: model_from_json(doc) for key, doc in fitted}


# -- train / evaluate --------------------------------------------------------------------------


def train(features: pl.DataFrame, params: dict[str, Any], seed: int = 0) -> Trained:
    """Fit Prophet on train and choose each series' method on validation (for the search);
    refit on train + validation and score the test tail (for promotion). The refitted
    models, with the chosen methods, are the ones kept."""
    p = {**DEFAULT_PARAMS, **params}
    unknown = set(p["methods"]) - set(METHODS)
    if unknown or not p["methods"]:
        raise ValueError(f"methods must be some of {', '.join(METHODS)}; got {p['methods']}")
    data = split_tail(series(features, p["freq"], p["sensors"]), p["holdout_frac"])
    tasks, limits, cutoffs, parts = [], {}, {}, {}
    for (machine_id, sensor), rows in data.group_by("machine_id", "sensor", maintain_order=True):
        early = rows.filter(pl.col("_part") == "train")
        known = rows.filter(pl.col("_part") != "test")
        if early.height < p["min_points"]:
            continue
        key = series_key(str(machine_id), str(sensor))
        y = known.get_column("y")
        limits[key] = float(p["limits"].get(sensor, y.mean() + p["limit_sigma"] * y.std()))
        cutoffs[key] = known.get_column("ds").max().isoformat()
        parts[key] = {name: (part.get_column("ds").to_numpy().astype("datetime64[us]"),
                             part.get_column("y").to_numpy().astype(float))
                      for name, part in (("train", early), ("known", known),
                                         ("validation", rows.filter(pl.col("_part")
                                                                    == "validation")))}
        for stage, part in (("validation", early), ("final", known)):
            ds, values = part.get_column("ds").to_list(), part.get_column("y").to_list()
            tasks.append((f"{stage}::{key}", ds, values, p))
    if not tasks:
        raise ValueError(f"no series has {p['min_points']} training points")
    fitted = fit_all(tasks, p["workers"])
    stage_models = {
        stage: {k.split("::", 1)[1]: m for k, m in fitted.items() if k.startswith(f"{stage}::")}
        for stage in ("validation", "final")
    }
    # each series' method, chosen on its validation part from the train part alone
    early_fits = ForecastModel(stage_models["validation"], limits)
    probe_methods, final_methods, selection = {}, {}, {}
    for key, part in parts.items():
        val_ds, val_y = part["validation"]
        prophet_yhat = early_fits.predict(key, val_ds)["yhat"].to_numpy()
        name, halfwidth, scores = choose(*part["train"], val_ds, val_y, prophet_yhat, p)
        probe_methods[key] = Method(name, *part["train"], halfwidth)
        final_methods[key] = Method(name, *part["known"], halfwidth)
        selection[key] = {k: round(v, 4) for k, v in scores.items()}
    model = ForecastModel(stage_models["final"], limits, final_methods)
    probe = ForecastModel(stage_models["validation"], limits, probe_methods)

    outlook = {
        key: model.time_to_limit(key, cutoffs[key], p["horizon_h"], p["freq"]) for key in limits
    }
    info = {
        "series": sorted(limits),
        "cutoffs": cutoffs,
        "limits": limits,
        "time_to_limit": outlook,
        "methods": {key: model.method(key) for key in sorted(limits)},
        "method_counts": method_counts(model),
        "selection": selection,  # validation sMAPE of each candidate, per series
        "freq": p["freq"],
        "holdout_frac": p["holdout_frac"],
        "n_train": sum(len(t[1]) for t in tasks if t[0].startswith("final::")),
        "split": {"method": "tail", "holdout_frac": p["holdout_frac"],
                  "notes": ["the validation part picks each series' forecaster "
                            f"({_counts_text(method_counts(model))})"]},
        "feature_table": FEATURE_TABLE,
    }
    tested = _score(model, data.filter(pl.col("_part") == "test"))
    info["holdout_per_sensor"] = per_sensor(tested)
    return Trained(
        model=model,
        params=p,
        metrics=_metrics(_score(probe, data.filter(pl.col("_part") == "validation"))),
        holdout_metrics={**_metrics(tested), **baseline_metrics(data, tested),
                         **_count_metrics(model)},
        figures={"forecast.png": _figure(model, data, cutoffs, p)},
        info=info,
    )


def method_counts(model: ForecastModel) -> dict[str, int]:
    """How many series each method forecasts (every method named, zeros included)."""
    counts = Counter(model.method(key) for key in model.limits)
    return {name: counts.get(name, 0) for name in METHODS}


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items() if n)


def _count_metrics(model: ForecastModel) -> dict[str, float]:
    """``series.<method>``: reported with the holdout metrics, so the catalog and MLflow
    show how many series fell back to a naive forecaster."""
    return {f"series.{name}": float(n) for name, n in method_counts(model).items()}


def _score(model: ForecastModel, holdout: pl.DataFrame) -> pl.DataFrame:
    """Holdout rows with the forecast and its interval, for the series the model knows."""
    parts = []
    for (machine_id, sensor), rows in holdout.group_by("machine_id", "sensor"):
        key = series_key(str(machine_id), str(sensor))
        if key not in model.models:
            continue
        fc = model.predict(key, rows.get_column("ds").to_list())
        parts.append(
            rows.with_columns(
                pl.Series("yhat", fc["yhat"].to_numpy()),
                pl.Series("lower", fc["yhat_lower"].to_numpy()),
                pl.Series("upper", fc["yhat_upper"].to_numpy()),
            )
        )
    return pl.concat(parts) if parts else pl.DataFrame()


def per_sensor(scored: pl.DataFrame) -> dict[str, dict[str, float]]:
    """The same metrics per sensor (a repair stop makes power's MAPE explode, not temp's)."""
    if scored.height == 0:
        return {}
    return {
        str(sensor): _metrics(rows)
        for (sensor,), rows in scored.sort("sensor").group_by("sensor", maintain_order=True)
    }


def _metrics(scored: pl.DataFrame) -> dict[str, float]:
    """MAPE and sMAPE over all held-out points, and the share inside the interval."""
    if scored.height == 0:
        return {"mape": math.nan, "smape": math.nan, "coverage": math.nan, "n_points": 0.0}
    y = pl.col("y")
    return {
        **_errors(scored),
        "coverage": float(
            scored.select(((y >= pl.col("lower")) & (y <= pl.col("upper"))).mean()).item()
        ),
        "n_points": float(scored.height),
    }


def _errors(scored: pl.DataFrame) -> dict[str, float]:
    """MAPE (over points not ~0) and sMAPE of ``yhat`` against ``y``."""
    y, yhat = pl.col("y"), pl.col("yhat")
    nonzero = scored.filter(y.abs() > 1e-9)
    return {
        "mape": float(nonzero.select(((y - yhat).abs() / y.abs()).mean()).item()),
        "smape": _smape(scored.get_column("y").to_numpy(), scored.get_column("yhat").to_numpy()),
    }


def evaluate(
    model: ForecastModel, features: pl.DataFrame, info: dict[str, Any]
) -> dict[str, float]:
    """MAPE / sMAPE / coverage on the last ``holdout_frac`` of each series in ``features``."""
    data = split_tail(series(features, info["freq"]), info["holdout_frac"])
    tested = _score(model, data.filter(pl.col("_part") == "test"))
    return {**_metrics(tested), **baseline_metrics(data, tested), **_count_metrics(model)}


def baseline_metrics(data: pl.DataFrame, tested: pl.DataFrame) -> dict[str, float]:
    """``baseline.<name>.smape`` / ``.mape`` of the naive forecasts (``baselines.
    naive_forecasts``) of exactly the held-out points the model scored (``tested``), each
    series forecast from its known part (train + validation) of ``data``, the history
    the model was refit on. ``seasonal`` is reported only when every scored series has a
    season of history (a baseline scored on some of the points is not comparable)."""
    if tested.height == 0:
        return {}
    season = _season()
    known = data.filter(pl.col("_part") != "test")
    parts = []
    for (machine_id, sensor), rows in tested.group_by("machine_id", "sensor",
                                                     maintain_order=True):
        history = known.filter((pl.col("machine_id") == machine_id)
                               & (pl.col("sensor") == sensor))
        guesses = baselines.naive_forecasts(history.get_column("ds").to_numpy(),
                                            history.get_column("y").to_numpy(),
                                            rows.get_column("ds").to_numpy(), season)
        parts.append(rows.select("y").with_columns(
            pl.Series(f"_{name}", values, dtype=pl.Float64) for name, values in guesses.items()))
    stacked = pl.concat(parts)
    out: dict[str, float] = {}
    for name in baselines.FORECASTS:
        guess = stacked.get_column(f"_{name}")
        if guess.is_nan().any():
            continue
        scored = stacked.select("y", guess.alias("yhat"))
        for metric in ("mape", "smape"):
            out[baselines.key(name, metric)] = _errors(scored)[metric]
    return out


def _figure(model: ForecastModel, data: pl.DataFrame, cutoffs: dict, p: dict[str, Any]) -> bytes:
    panels = []
    keys = sorted(cutoffs)[:9]  # a readable grid; the rest are in the metrics
    for key in keys:
        machine_id, sensor = key.split("/", 1)
        rows = data.filter((pl.col("machine_id") == machine_id) & (pl.col("sensor") == sensor))
        first = rows.get_column("ds").min()
        end = pd.Timestamp(cutoffs[key]) + pd.Timedelta(hours=p["horizon_h"])
        fc = model.predict(key, pd.date_range(first, end, freq=p["freq"]))
        panels.append(
            {
                "name": f"{key} ({model.method(key)})",
                "ds": rows.get_column("ds").to_numpy(),
                "y": rows.get_column("y").to_numpy(),
                "fc_ds": fc["ds"].to_numpy(),
                "yhat": fc["yhat"].to_numpy(),
                "lower": fc["yhat_lower"].to_numpy(),
                "upper": fc["yhat_upper"].to_numpy(),
                "cutoff": pd.Timestamp(cutoffs[key]),
                "limit": model.limits[key],
            }
        )
    return plots.forecasts(panels, "Hourly means: history, holdout forecast and limit")


# -- persistence -------------------------------------------------------------------------------


def save(trained: Trained, path: Path) -> None:
    from prophet.serialize import model_to_json

    path = Path(path)
    write_info(path, trained.info, trained.params)
    folder = path / MODELS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    index = {}
    for i, (key, prophet_model) in enumerate(sorted(trained.model.models.items())):
        name = f"{i:04d}.json"  # keys hold '/', and machine ids may hold anything else
        (folder / name).write_text(model_to_json(prophet_model))
        index[key] = name
    methods = {key: method.to_json() for key, method in sorted(trained.model.methods.items())}
    write_info(folder, {"files": index, "methods": methods}, {})


def load(path: Path) -> tuple[ForecastModel, dict[str, Any]]:
    from prophet.serialize import model_from_json

    quiet()
    path = Path(path)
    info, _ = read_info(path)
    index, _ = read_info(path / MODELS_DIR)
    models = {
        key: model_from_json((path / MODELS_DIR / name).read_text())
        for key, name in index["files"].items()
    }
    # models saved before methods existed: Prophet for every series
    methods = {key: Method.from_json(doc) for key, doc in index.get("methods", {}).items()}
    return ForecastModel(models, info["limits"], methods), info
