"""The promotion gate of a drift retrain: challenger and champion judged on recent rows.

A fake family (``y = 2x + bias``) on a real MLflow registry under tmp_path: the plant's
relation shifts by +4 for the last ten hours; the champion fits the old normal, the
challenger the new one. The whole hold-out (last fifth of the table) is mostly pre-drift,
the recent window's hold-out is all post-drift.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest

from mfg_assets.ml.base import POSITIVES, Trained
from mfg_assets.ml.gate import gate_decision, gate_evidence, recent_rows, unscorable
from mfg_assets.ml.registry import ModelRegistry
from mfg_assets_tests.ml import fake_family

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOURS = 200
ONSET = 190  # hour of the shift: the whole hold-out (hours 160-199) is 3/4 pre-drift
RECENT_H = 50.0  # hours 149-199: their hold-out (last fifth) is hours 190-199


def drifted_table() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    x = np.arange(HOURS, dtype=float) / 10
    shift = np.where(np.arange(HOURS) >= ONSET, 4.0, 0.0)
    return pl.DataFrame({
        "ts": [T0 + timedelta(hours=h) for h in range(HOURS)],
        "x": x,
        "y": 2.0 * x + 1.0 + shift + rng.normal(0, 0.3, HOURS),
    })


def fixed_family(bias: float, min_rows: int = 0) -> Any:
    """The fake family with one candidate, ``y = 2x + bias`` whatever the data; its
    evaluate() cannot score fewer than ``min_rows`` rows (metrics NaN, like a window
    without test blocks)."""

    def train(features: pl.DataFrame, params: dict, seed: int = 0) -> Trained:
        model = {"slope": 2.0, "bias": bias}
        return Trained(model=model, params=params,
                       metrics={"mae": fake_family._mae(model, features)}, holdout_metrics={})

    def evaluate(model: Any, features: pl.DataFrame, info: dict) -> dict[str, float]:
        if features.height < min_rows:
            return {"mae": math.nan}
        return fake_family.evaluate(model, features, info)

    return SimpleNamespace(FAMILY=fake_family.FAMILY, search_space=lambda b, s: [{"bias": bias}],
                           train=train, evaluate=evaluate, save=fake_family.save,
                           load=fake_family.load)


@pytest.fixture
def registry(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MFG_MLFLOW_ARTIFACTS", raising=False)
    return ModelRegistry()


def champion_then_challenger(registry: ModelRegistry, table: pl.DataFrame,
                             min_rows: int = 0) -> tuple[Any, dict[str, float]]:
    old = registry.run_search(fixed_family(1.0), table, 1, 0, {"features.fake": 0})
    registry.set_champion(old.model_name, old.version)
    module = fixed_family(5.0, min_rows)
    new = registry.run_search(module, table, 1, 0, {"features.fake": 1})
    return module, new.holdout_metrics


def test_recent_rows_are_the_last_hours_before_the_newest_row():
    table = drifted_table()
    recent = recent_rows(table, "ts", RECENT_H)
    assert recent.height == 51  # hours 149..199, both ends included
    assert recent.get_column("ts").min() == T0 + timedelta(hours=149)
    assert recent_rows(table.clear(), "ts", RECENT_H).is_empty()


def test_a_challenger_that_fixes_the_drift_passes_only_on_the_recent_window(registry):
    table = drifted_table()
    module, challenger_whole = champion_then_challenger(registry, table)
    warnings: list[str] = []

    # production default: the whole hold-out, mostly the old normal: the champion wins
    whole = gate_evidence(registry, module, table, challenger_whole, "ts", 0.0, warnings.append)
    assert whole.scope == "whole hold-out" and whole.champion_version == "1"
    assert whole.challenger["mae"] > whole.champion["mae"]
    refused = gate_decision(module.FAMILY, whole, margin=0.01)
    assert not refused.passed and refused.reason.startswith("whole hold-out: mae")

    # a drift retrain: both models on the last 50 h, where the new normal rules
    recent = gate_evidence(registry, module, table, challenger_whole, "ts", RECENT_H,
                           warnings.append)
    assert recent.rows == 51 and recent.champion_version == "1"
    assert recent.challenger["mae"] < 1.0 < 3.0 < recent.champion["mae"]
    passed = gate_decision(module.FAMILY, recent, margin=0.01)
    assert passed.passed, passed.reason
    assert passed.reason.startswith(
        "hold-out of the last 50 h (2026-11-07 05:00 .. 2026-11-09 07:00, 51 rows; floors on "
        "the whole hold-out): mae")
    assert recent.floors == challenger_whole  # the absolute floors: on the larger hold-out
    assert warnings == []


def test_an_unscorable_recent_window_falls_back_to_the_whole_holdout(registry):
    table = drifted_table()
    module, challenger_whole = champion_then_challenger(registry, table, min_rows=60)
    warnings: list[str] = []
    evidence = gate_evidence(registry, module, table, challenger_whole, "ts", RECENT_H,
                             warnings.append)
    assert evidence.rows == HOURS and evidence.challenger == challenger_whole
    assert evidence.scope.startswith("the last 50 h (51 rows) cannot be scored (mae not finite)")
    assert evidence.scope.endswith("fell back to the whole hold-out")
    assert warnings and "fell back" in warnings[0]
    decision = gate_decision(module.FAMILY, evidence, margin=0.01)
    assert not decision.passed and "cannot be scored" in decision.reason


QUIET_FAMILY = replace(fake_family.FAMILY, quiet_metric="false_alarm_rate")


def quiet_family(bias: float, alarms: float, min_rows: int, positives: int = 0) -> Any:
    """The fixed fake family with a quiet metric: each model alarms on a fixed share of
    normal rows (``alarms``), the primary metric needs ``min_rows`` rows (a recent window
    without positives), and every evaluation reports ``positives`` positive rows."""

    def train(features: pl.DataFrame, params: dict, seed: int = 0) -> Trained:
        model = {"slope": 2.0, "bias": bias, "alarms": alarms}
        return Trained(model=model, params=params,
                       metrics={"mae": fake_family._mae(model, features)}, holdout_metrics={})

    def evaluate(model: Any, features: pl.DataFrame, info: dict) -> dict[str, float]:
        mae = (math.nan if features.height < min_rows
               else fake_family.evaluate(model, features, info)["mae"])
        return {"mae": mae, "false_alarm_rate": model["alarms"], POSITIVES: positives}

    return SimpleNamespace(FAMILY=QUIET_FAMILY, search_space=lambda b, s: [{"bias": bias}],
                           train=train, evaluate=evaluate, save=fake_family.save,
                           load=fake_family.load)


def quiet_gate(registry: ModelRegistry, bias: float, alarms: float, min_rows: int = 60,
               positives: int = 0) -> Any:
    table = drifted_table()
    old = registry.run_search(quiet_family(1.0, 0.5, min_rows, positives), table, 1, 0,
                              {"features.fake": 0})
    registry.set_champion(old.model_name, old.version)
    module = quiet_family(bias, alarms, min_rows, positives)
    new = registry.run_search(module, table, 1, 0, {"features.fake": 1})
    warnings: list[str] = []
    evidence = gate_evidence(registry, module, table, new.holdout_metrics, "ts", RECENT_H,
                             warnings.append)
    assert warnings == []  # no fallback: the window is judged on the quiet metric
    return evidence, gate_decision(QUIET_FAMILY, evidence, margin=0.01)


def test_a_window_without_positives_is_judged_on_the_quiet_metric(registry):
    evidence, decision = quiet_gate(registry, bias=1.0, alarms=0.1)
    # both models on the recent window, where the primary metric is not defined
    recent = evidence.quiet
    assert recent["challenger"]["false_alarm_rate"] == 0.1
    assert recent["champion"]["false_alarm_rate"] == 0.5
    assert math.isnan(recent["challenger"]["mae"]) and math.isnan(recent["champion"]["mae"])
    # challenger and champion themselves: the whole hold-out, equal primary metric here
    assert evidence.challenger["mae"] == pytest.approx(evidence.champion["mae"])
    assert evidence.rows == HOURS and evidence.champion_version == "1"
    assert evidence.scope.startswith("the last 50 h (51 rows) cannot be scored (mae not finite: "
                                     "no fault among its test rows); false_alarm_rate there")
    assert decision.passed, decision.reason
    assert "false_alarm_rate 0.1 vs champion 0.5 on the recent window: +80.00%" in decision.reason


def test_a_window_with_few_positives_is_judged_on_the_quiet_metric(registry):
    # the window scores (mae is finite) but on 3 positive rows: too few to rank on
    evidence, decision = quiet_gate(registry, bias=1.0, alarms=0.1, min_rows=0, positives=3)
    assert evidence.scope.startswith("the last 50 h (51 rows) holds 3 positive test rows "
                                     "(fewer than 10 to rank on mae); false_alarm_rate there")
    assert decision.passed and "false_alarm_rate 0.1 vs champion 0.5" in decision.reason


def test_a_window_with_enough_positives_ranks_on_the_primary_metric(registry):
    evidence, decision = quiet_gate(registry, bias=1.0, alarms=0.1, min_rows=0, positives=12)
    assert evidence.quiet is None and evidence.scope.startswith("hold-out of the last 50 h")
    # the same fit: a tie on mae never promotes, however quiet the challenger is
    assert not decision.passed and "+0.00%" in decision.reason


def test_a_quieter_challenger_that_lost_accuracy_on_the_whole_holdout_is_refused(registry):
    _, decision = quiet_gate(registry, bias=5.0, alarms=0.1)
    assert not decision.passed
    assert "on the whole hold-out" in decision.reason and "worse)" in decision.reason


def test_unscorable_names_metrics_the_window_loses():
    whole = {"f1": 0.6, "auroc": 0.9, "extra": math.nan}
    assert unscorable(whole, {"f1": 0.0, "auroc": math.nan}, None) == ["auroc"]
    assert unscorable(whole, {"f1": 0.5, "auroc": 0.8}, {"f1": 0.4, "auroc": 0.7}) == []
