"""An edge_health challenger trained the way the models asset trains it (``gate.challenge``:
the family's search in MLflow, the saved model evaluated on its test blocks, the registry's
gate) passes that gate against its baselines on a simulated plant-like fleet.

One fleet in the default run (budget 1: the default candidate); three simulated fleets with
the default search budget of 3 in the slow run, figures printed for the issue note.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from mfg_assets.ml import edge_health, features
from mfg_assets.ml.gate import Challenge, GateSettings, challenge
from mfg_assets.ml.registry import GATE_TAG, ModelRegistry
from mfg_assets.sim import SimConfig
from mfg_assets.sim.device_faults import edge_fleet
from mfg_assets_tests.ml.simdata import simulate_silver

EDGES, DAYS = 12, 12


def fleet_windows(seed: int) -> pl.DataFrame:
    config = SimConfig(seed=seed, duration_h=24 * DAYS, telemetry_period_s=120.0,
                       sources=("telemetry",), device_fault_rate_per_day=0.5,
                       fault_rate_per_day=0.0, plant=edge_fleet(EDGES))
    silver = simulate_silver(config)
    return features.edge_telemetry(silver["silver.edge_telemetry"],
                                   silver["silver.fault_labels"])


@pytest.fixture
def registry(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MFG_MLFLOW_ARTIFACTS", raising=False)
    return ModelRegistry()


def _challenge(registry: ModelRegistry, windows: pl.DataFrame, budget: int) -> Challenge:
    warnings: list[str] = []
    done = challenge(registry, edge_health, windows, {"features.edge_telemetry": 0},
                     "window_start", GateSettings(budget=budget), warnings.append)
    assert not warnings, warnings
    return done


def _figures(seed: int, done: Challenge) -> str:
    m = done.result.holdout_metrics
    return (f"fleet seed {seed}: precision {m['precision']:.3f} recall {m['recall']:.3f} "
            f"f1 {m['f1']:.3f} auroc {m['auroc']:.3f} event recall {m['event_recall']:.2f} "
            f"median lead {m['lead_h_median']:.2f} h ({m['positives']:.0f} positive windows) | "
            f"logistic f1 {m['baseline.logistic.f1']:.3f} auroc "
            f"{m['baseline.logistic.auroc']:.3f} | majority f1 "
            f"{m['baseline.majority.f1']:.3f} | gate {done.decision.verdict}: "
            f"{done.decision.reason}")


def test_a_challenger_trained_through_the_search_passes_the_gate(registry):
    done = _challenge(registry, fleet_windows(1), budget=1)
    print("\n" + _figures(1, done))
    m = done.result.holdout_metrics
    assert done.decision.passed, done.decision.reason
    assert "beats baselines" in done.decision.reason
    assert m["f1"] > m["baseline.logistic.f1"] and m["auroc"] > m["baseline.logistic.auroc"]
    assert m["baseline.majority.f1"] == 0.0
    # the verdict is recorded on the registered version, and the model loads as saved
    version = registry.client.get_model_version(done.result.model_name, done.result.version)
    assert version.tags.get(GATE_TAG) == "passed"
    assert math.isfinite(done.result.info["threshold"])


@pytest.mark.slow
def test_challengers_pass_the_gate_on_three_fleets(registry):
    """Three simulated fleets (about 70 failures each), the default search budget: the
    challenger beats the logistic and majority baselines on the hold-out of every one."""
    verdicts = []
    for seed in (1, 2, 3):
        done = _challenge(registry, fleet_windows(seed), budget=GateSettings().budget)
        print("\n" + _figures(seed, done))
        verdicts.append(done.decision.passed)
        registry.client.delete_registered_model(done.result.model_name)  # next one is first
    assert sum(verdicts) == 3, verdicts
