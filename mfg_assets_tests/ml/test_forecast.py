"""Prophet forecasts per machine and sensor: holdout accuracy, time to a limit, pool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from mfg_assets.ml import forecast

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def rising(hours: int = 48, slope: float = 0.1) -> pl.DataFrame:
    """A machine whose 'wear' rises linearly (one window per 10 min) plus a daily cycle."""
    n = hours * 6
    k = np.arange(n)
    noise = np.random.default_rng(0).normal(0, 0.05, n)
    wear = 1.0 + slope * k / 6 + 0.3 * np.sin(2 * np.pi * k / (24 * 6)) + noise
    return pl.DataFrame(
        {
            "machine_id": ["m1"] * n,
            "machine_type": ["t"] * n,
            "window_start": [T0 + timedelta(minutes=10 * i) for i in range(n)],
            "wear__mean": wear,
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
