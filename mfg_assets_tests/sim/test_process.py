"""Process runs: unique units, a learnable yield relation, a noisy but honest pass/fail."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import r2_score

from mfg_assets.sim import SimConfig, iter_messages
from mfg_assets.sim.process import BEST_YIELD

# ~4300 units: three cells, one unit every 10 s each, for 4 hours (faults on, as usual).
CONFIG = SimConfig(seed=4, duration_h=4.0, unit_period_s=10.0, sources=("process",))
PARAMS = (
    "current_setpoint",
    "voltage_setpoint",
    "wire_feed_setpoint",
    "travel_speed",
    "gas_flow",
    "plate_thickness",
    "ambient_temp",
)


def _units() -> list[dict]:
    return [m.doc for m in iter_messages(CONFIG)]


def test_units_are_unique_and_complete() -> None:
    units = _units()
    assert len(units) > 4000
    assert len({u["unitId"] for u in units}) == len(units)
    for u in units:
        assert tuple(u["parameters"]) == PARAMS
        assert 0.0 <= u["yield"] <= 100.0
        assert u["materialLot"].startswith("LOT-")
    assert {u["product"] for u in units} == {"door-frame", "floor-panel", "b-pillar"}


def test_yield_is_learnable_from_the_parameters() -> None:
    units = _units()
    x = np.array([[u["parameters"][p] for p in PARAMS] for u in units])
    y = np.array([u["yield"] for u in units])
    assert 2.0 < y.std() < 10.0 and y.max() <= BEST_YIELD + 3.0
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[: int(0.75 * len(y))], order[int(0.75 * len(y)) :]
    model = HistGradientBoostingRegressor(random_state=0).fit(x[train], y[train])
    assert r2_score(y[test], model.predict(x[test])) > 0.85


def test_passed_follows_yield_against_the_threshold_with_some_noise() -> None:
    units = _units()
    y = np.array([u["yield"] for u in units])
    passed = np.array([u["passed"] for u in units])
    agree = np.mean(passed == (y >= CONFIG.yield_threshold))
    assert 0.9 < agree < 1.0  # a separate QA measurement: mostly, not always, agrees
    assert 0.3 < passed.mean() < 0.95  # both classes well represented
    far = np.abs(y - CONFIG.yield_threshold) > 4.0
    assert np.all(passed[far] == (y[far] >= CONFIG.yield_threshold))
