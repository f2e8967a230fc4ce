"""drift_report writes monitoring.drift; the drift sensor retrains the drifted family once."""

from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mfg_assets.defs.drift import (
    DRIFT_GATE_HOURS,
    REASON_TAG,
    TRIGGER_TAG,
    drift_report,
    model_drift,
)
from mfg_assets.defs.models import MlflowResource, TrainConfig
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.registry import table
from mfg_assets.ml import features
from mfg_assets.sim import SimConfig
from mfg_assets_tests.ml.simdata import simulate_silver


@pytest.fixture(scope="module")
def process_units() -> pl.DataFrame:
    config = SimConfig(seed=3, duration_h=6, sources=("process",),
                       drift=[("material_lot", 4.0)])
    silver = simulate_silver(config)
    return features.process_units(silver["silver.process_runs"],
                                  silver["silver.process_parameters"])


def _report(lake, instance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [drift_report], instance=instance,
        resources={"lakehouse": LakehouseResource(root=lake.root),
                   # no champion registered: the oldest window is the reference
                   "mlflow": MlflowResource(
                       tracking_uri=f"sqlite:///{Path(lake.root).parent / 'mlflow.db'}")},
        run_config={"ops": {"monitoring__drift": {"config": {
            "families": ["process_yield"], "reference": "oldest",
            "reference_hours": 2.0, "recent_hours": 2.0, "plots": 2}}}},
    )


def test_drift_report_and_sensor_retrain_the_drifted_model_once(lake, process_units):
    instance = dg.DagsterInstance.ephemeral()
    units = table("features.process_units")
    t0 = process_units.get_column("ts").min()
    lake.overwrite(units, process_units.filter(pl.col("ts") < t0 + timedelta(hours=4)))
    result = _report(lake, instance)
    assert result.success
    rows = lake.read(table("monitoring.drift"))
    assert rows.height > 0 and not rows.get_column("family_drifted").any()

    resources = {"lakehouse": LakehouseResource(root=lake.root)}
    context = dg.build_sensor_context(instance=instance, resources=resources)
    assert isinstance(model_drift(context), dg.SkipReason)  # no drift before the new lot

    lake.overwrite(units, process_units)  # the new supplier's lot arrives
    result = _report(lake, instance)
    meta = result.asset_materializations_for_node("monitoring__drift")[0].metadata
    # one drifted evaluation is not yet drift (persistence: 2 in a row by default)...
    assert "not yet" in meta["drift"].value and "**yes**" not in meta["drift"].value
    assert isinstance(model_drift(context), dg.SkipReason)
    result = _report(lake, instance)  # ...the next evaluation still sees it: declared
    meta = result.asset_materializations_for_node("monitoring__drift")[0].metadata
    assert "**yes**" in meta["drift"].value
    assert "data:image/png;base64," in meta["histograms/process_yield"].value

    out = model_drift(context)
    (request,) = out.run_requests
    assert request.tags[TRIGGER_TAG] == "drift"
    assert "yield_pct" in request.tags[REASON_TAG]
    assert {k.to_user_string() for k in request.asset_selection} == {
        "features/process_units", "models/process_yield", "models/process_yield_champion"}
    # its gate judges on the recent rows (keys the challenger's TrainConfig declares)
    train = request.run_config["ops"]["models__process_yield"]["config"]
    assert set(train) <= set(TrainConfig.model_fields)
    assert TrainConfig(**train).gate_recent_hours == DRIFT_GATE_HOURS > 0

    again = dg.build_sensor_context(instance=instance, resources=resources, cursor=out.cursor)
    assert isinstance(model_drift(again), dg.SkipReason)  # same evidence: not twice
    _report(lake, instance)  # re-evaluated, same drift
    assert isinstance(model_drift(again), dg.SkipReason)
