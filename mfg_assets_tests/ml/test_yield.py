"""Process yield regression and pass/fail classification from parameters."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mfg_assets.ml import features, yield_model

PARAMS = {"block": "10m"}  # six simulated hours: short blocks give every split rows


@pytest.fixture(scope="module")
def trained(process_units):
    return yield_model.train(process_units, PARAMS, seed=0)


def test_learns_yield_and_pass_fail(trained):
    # Predicting the mean gives R² 0; the always-pass guess gets accuracy ~0.72.
    assert trained.holdout_metrics["r2"] >= 0.75
    assert trained.holdout_metrics["accuracy"] >= 0.85
    assert trained.holdout_metrics["auroc"] >= 0.9
    assert trained.metrics["r2"] >= 0.75


def test_importances_name_the_parameters_that_drive_yield(trained):
    importances = trained.info["importances"]
    assert set(importances) == {c.removeprefix("param__") for c in trained.info["parameters"]}
    ranked = sorted(importances, key=importances.get, reverse=True)
    # The simulator's physics: current vs plate thickness dominates; ambient barely matters.
    assert set(ranked[:2]) == {"current_setpoint", "plate_thickness"}
    assert importances["ambient_temp"] < 0.05 * importances["current_setpoint"]
    assert {"feature_importance.png", "confusion_matrix.png", "predicted_vs_actual.png"} <= set(
        trained.figures
    )


def test_parameter_names_come_from_the_data(process_silver):
    renamed = process_silver["silver.process_parameters"].with_columns(
        pl.col("name").replace({"current_setpoint": "Strom_Soll", "gas_flow": "gas.flow"})
    )
    units = features.process_units(process_silver["silver.process_runs"], renamed)
    result = yield_model.train(units, PARAMS)
    assert {"Strom_Soll", "gas.flow"} <= set(result.info["importances"])
    assert "current_setpoint" not in result.info["importances"]
    assert result.holdout_metrics["r2"] >= 0.75


def test_evaluate_and_save_load(trained, process_units, tmp_path):
    assert yield_model.evaluate(trained.model, process_units, trained.info) == pytest.approx(
        trained.holdout_metrics
    )
    yield_model.save(trained, tmp_path / "m")
    model, info = yield_model.load(tmp_path / "m")
    assert info["parameters"] == trained.info["parameters"]
    np.testing.assert_array_equal(
        model.predict(process_units), trained.model.predict(process_units)
    )
    # the model scores a pandas frame too (MLflow's pyfunc hands it one)
    np.testing.assert_array_equal(
        model.predict(process_units.to_pandas()), trained.model.predict(process_units)
    )
