"""Adding a family is one registry entry plus one module: the Dagster layer follows.

A toy family (``mfg_assets_tests/ml/fake_family.py``) on a feature table no real family
uses (``features.edge_telemetry``), with its own retrain priority: built from the registry,
it gets a challenger with the blocking promotion gate, a champion behind it, a place in the
drift report's inputs and families, and drift retrains at its priority.
"""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from mfg_assets.defs.automation import PRIORITY_TAG
from mfg_assets.defs.drift import DriftConfig, drift_report_asset, retrain_requests
from mfg_assets.defs.models import (
    GATE,
    champion_key,
    family_model_assets,
    model_key,
    model_resources,
)
from mfg_assets.defs.resources import default_resources
from mfg_assets.ml import families
from mfg_assets.ml.families import FAMILIES, DriftInputs, FamilySpec
from mfg_assets_tests.ml import fake_family

TABLE = "features.edge_telemetry"
TOY = FamilySpec(
    model=fake_family.FAMILY,  # name "fake"
    module="mfg_assets_tests.ml.fake_family",
    feature_table=TABLE,
    drift=DriftInputs(TABLE, "window_start", "edge_id", "sensor"),
    kinds=frozenset({"sklearn", "mlflow"}),
    description="A toy family for the registry test.",
    retrain_priority=15,  # between edge-served (20) and routine (10) families
)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> FamilySpec:
    monkeypatch.setitem(FAMILIES, TOY.name, TOY)  # removed again after the test
    return TOY


def _by_key(assets: list[dg.AssetsDefinition]) -> dict[dg.AssetKey, dg.AssetsDefinition]:
    return {key: a for a in assets for key in a.keys}


def test_a_registered_family_gets_a_gated_challenger_and_a_champion(toy):
    assets = _by_key(family_model_assets(FAMILIES.values()))
    challenger, champion = assets[model_key("fake")], assets[champion_key("fake")]
    (check,) = challenger.check_specs
    assert (check.name, check.blocking) == (GATE, True)
    assert challenger.specs_by_key[model_key("fake")].deps[0].asset_key == dg.AssetKey(
        ["features", "edge_telemetry"])
    assert {d.asset_key for d in champion.specs_by_key[champion_key("fake")].deps} == {
        model_key("fake")}
    assert set(challenger.specs_by_key[model_key("fake")].kinds) == {"sklearn", "mlflow"}
    # the real families are still there, and the whole graph with the toy one resolves
    assert model_key("process_yield") in assets
    drift = drift_report_asset(FAMILIES.values())
    resources = {**default_resources(), **model_resources()}
    graph = dg.Definitions(assets=[*set(assets.values()), drift],
                           resources=resources).resolve_asset_graph()
    assert graph.get(champion_key("fake")).parent_keys == {model_key("fake")}
    # family() finds its module and checks it agrees with the entry
    assert families.family("fake") is fake_family


def test_a_registered_family_is_monitored_and_retrained_at_its_priority(toy):
    drift = drift_report_asset(FAMILIES.values())
    deps = {d.asset_key for d in next(iter(drift.specs)).deps}
    assert dg.AssetKey(["features", "edge_telemetry"]) in deps
    assert "fake" in DriftConfig().families
    assert DriftConfig().settings().families[-1] == "fake"
    drifted = pl.DataFrame({"family": ["process_yield", "fake", "sensor_anomaly"],
                            "evidence_id": ["e1", "e2", "e3"], "reason": ["r"] * 3})
    requests, cursor = retrain_requests(drifted, {})
    assert [r.tags["mfg/families"] for r in requests] == [
        "sensor_anomaly", "fake", "process_yield"]  # 20, 15, 10
    toy_request = requests[1]
    assert toy_request.tags[PRIORITY_TAG] == "15"
    assert toy_request.asset_selection == [dg.AssetKey(["features", "edge_telemetry"]),
                                           model_key("fake"), champion_key("fake")]
    assert cursor["fake"] == "e2"


def test_a_module_that_disagrees_with_its_entry_is_refused(monkeypatch):
    wrong = FamilySpec(**{**TOY.__dict__, "model": families.spec("process_yield").model})
    monkeypatch.setitem(FAMILIES, "process_yield", wrong)  # names the fake module
    with pytest.raises(ValueError, match="declares"):
        families.family("process_yield")
