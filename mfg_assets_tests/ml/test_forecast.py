"""Forecasts per machine and sensor: holdout accuracy, time to a limit, pool, and each
series' method (Prophet or a naive forecaster) chosen on its validation part."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest

from mfg_assets.ml import baselines, features, forecast
from mfg_assets.ml.gate import gate_family, promotion_decision
from mfg_assets.sim import SimConfig
from mfg_assets_tests.ml.simdata import simulate_silver

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def rising(hours: int = 48, slope: float = 0.1) -> pl.DataFrame:
    """A machine whose 'wear' rises linearly (one window per 10 min) plus a daily cycle."""
    n = hours * 6
    k = np.arange(n)
    noise = np.random.default_rng(0).normal(0, 0.05, n)
    wear = 1.0 + slope * k / 6 + 0.3 * np.sin(2 * np.pi * k / (24 * 6)) + noise
    return one_machine("wear__mean", wear)


def one_machine(column: str, values: np.ndarray) -> pl.DataFrame:
    """Sensor windows of one machine, one per 10 min from T0, with one feature column."""
    n = len(values)
    return pl.DataFrame(
        {
            "machine_id": ["m1"] * n,
            "machine_type": ["t"] * n,
            "window_start": [T0 + timedelta(minutes=10 * i) for i in range(n)],
            column: values,
        }
    ).with_columns(pl.col("window_start").dt.cast_time_unit("us"))


@pytest.fixture(scope="module")
def trained_rising():
    params = {"workers": 1, "limits": {"wear": 7.0}, "daily_seasonality": True}
    return forecast.train(rising(), params, seed=0)


def test_forecasts_a_trend_and_when_it_crosses_the_limit(trained_rising):
    assert trained_rising.holdout_metrics["mape"] < 0.05
    assert trained_rising.holdout_metrics["coverage"] >= 0.6  # of a 90 % interval
    outlook = trained_rising.info["time_to_limit"]["m1/wear"]
    # wear(t) = 1 + 0.1 t (hours) crosses 7.0 at t = 60 h; the fit ends at ~38.4 h
    cutoff = datetime.fromisoformat(trained_rising.info["cutoffs"]["m1/wear"])
    expected = 60.0 - (cutoff - T0.replace(tzinfo=None)).total_seconds() / 3600
    assert outlook["hours_to_limit"] == pytest.approx(expected, abs=3.0)
    assert outlook["hours_to_limit_upper"] <= outlook["hours_to_limit"]
    assert trained_rising.figures["forecast.png"].startswith(b"\x89PNG")


def daily_profile(hours: int = 72) -> pl.DataFrame:
    """A 'load' that repeats the same (seeded, step-shaped) hour-of-day profile every day."""
    n = hours * 6
    k = np.arange(n)
    rng = np.random.default_rng(3)
    profile = rng.uniform(5.0, 15.0, 24)
    load = profile[(k // 6) % 24] + rng.normal(0, 0.05, n)
    return one_machine("load__mean", load)


def test_a_trend_keeps_prophet(trained_rising):
    # last value, mean and a day earlier all lag a rising trend: Prophet wins validation
    assert trained_rising.info["methods"] == {"m1/wear": "prophet"}
    scores = trained_rising.info["selection"]["m1/wear"]
    assert scores["prophet"] == min(scores.values()), scores
    assert trained_rising.holdout_metrics["series.prophet"] == 1.0
    assert trained_rising.holdout_metrics["series.seasonal"] == 0.0


def test_seasonal_naive_is_used_where_it_wins_on_validation(tmp_path):
    # Prophet without a daily term (as a plant may configure it) cannot follow the profile;
    # the value a day earlier can
    result = forecast.train(daily_profile(), {"workers": 1, "daily_seasonality": False})
    scores = result.info["selection"]["m1/load"]
    assert scores["seasonal"] < 0.5 * min(scores["prophet"], scores["prophet_seasonal"]), scores
    assert result.info["methods"] == {"m1/load": "seasonal"}
    assert result.info["method_counts"]["seasonal"] == 1
    assert result.holdout_metrics["series.seasonal"] == 1.0
    assert "seasonal 1" in result.info["split"]["notes"][0]
    held = result.holdout_metrics
    # it forecasts exactly what the seasonal-naive baseline does, with an interval of its own
    assert held["smape"] == pytest.approx(held["baseline.seasonal.smape"])
    assert held["smape"] < 0.02 and held["coverage"] >= 0.6
    cutoff = result.info["cutoffs"]["m1/load"]
    fc = result.model.predict("m1/load", pd.date_range(cutoff, periods=3, freq="1h")[1:])
    assert (fc["yhat_upper"] > fc["yhat"]).all() and (fc["yhat_lower"] < fc["yhat"]).all()
    # the method travels with the saved model
    forecast.save(result, tmp_path / "m")
    model, info = forecast.load(tmp_path / "m")
    assert model.method("m1/load") == "seasonal"
    assert forecast.evaluate(model, daily_profile(), info) == pytest.approx(held)


@pytest.mark.parametrize("hours", [48, 72])
def test_family_gate_passes_on_the_simulator(hours):
    # default seed; Prophet alone lost to the last value (48 h) and a day earlier (72 h)
    silver = simulate_silver(SimConfig(duration_h=hours, sources=("welding", "press")))
    windows = features.sensor_windows(
        silver["silver.sensor_readings"], silver["silver.fault_labels"]
    )
    result = forecast.train(windows, {"workers": 1}, seed=0)
    held = result.holdout_metrics
    assert set(baselines.of(held, "smape")) == {"last", "mean", "seasonal"}
    decision = promotion_decision(gate_family(forecast.FAMILY, {}), held, None, 0.01)
    assert decision.passed, decision.reason
    assert sum(result.info["method_counts"].values()) == len(result.info["series"])


def test_simulated_temperatures_forecast_well(sensor_windows):
    result = forecast.train(sensor_windows, {"workers": 1, "sensors": ["temperature"]})
    assert result.info["series"] == [
        "weld-01/temperature",
        "weld-02/temperature",
        "weld-03/temperature",
    ]
    assert result.holdout_metrics["mape"] < 0.15
    assert forecast.evaluate(result.model, sensor_windows, result.info) == pytest.approx(
        result.holdout_metrics
    )


@pytest.mark.slow
def test_process_pool_gives_the_same_models_as_sequential(trained_rising, tmp_path):
    params = {"workers": 2, "limits": {"wear": 7.0}, "daily_seasonality": True}
    pooled = forecast.train(rising(), params, seed=0)
    assert pooled.holdout_metrics["mape"] == pytest.approx(trained_rising.holdout_metrics["mape"])
    forecast.save(pooled, tmp_path / "m")
    model, info = forecast.load(tmp_path / "m")
    assert info["series"] == ["m1/wear"]
    again = forecast.evaluate(model, rising(), info)
    assert again["mape"] == pytest.approx(pooled.holdout_metrics["mape"])


def test_no_series_long_enough_is_a_clear_error():
    with pytest.raises(ValueError, match="training points"):
        forecast.train(rising(hours=2), {"workers": 1})
