"""fleet/deploy.run_policy and as_of: a rollout run's policy and its moment, without Dagster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mfg_assets.fleet import rollout as ro
from mfg_assets.fleet.deploy import as_of, run_policy


def test_evidence_minimums_given_else_environment_else_policy(monkeypatch):
    monkeypatch.delenv("MFG_ROLLOUT_MIN_PREDICTIONS", raising=False)
    monkeypatch.delenv("MFG_ROLLOUT_MIN_LABELLED", raising=False)
    policy = run_policy()
    assert (policy.min_predictions, policy.min_labelled) == (
        ro.RolloutPolicy.min_predictions, ro.RolloutPolicy.min_labelled)
    monkeypatch.setenv("MFG_ROLLOUT_MIN_PREDICTIONS", "20")
    monkeypatch.setenv("MFG_ROLLOUT_MIN_LABELLED", "10")
    assert (run_policy().min_predictions, run_policy().min_labelled) == (20, 10)
    policy = run_policy(0.5, 15.0, 0.02, min_predictions=7)
    assert (policy.min_predictions, policy.min_labelled) == (7, 10)
    assert policy.canary_fraction == 0.5 and policy.max_accuracy_drop == 0.02
    assert policy.window == timedelta(minutes=15)


def test_as_of_reads_iso_times_as_utc_and_empty_as_now():
    assert as_of("2026-11-02T08:00:00Z") == datetime(2026, 11, 2, 8, tzinfo=UTC)
    assert as_of("2026-11-02T08:00:00") == datetime(2026, 11, 2, 8, tzinfo=UTC)  # naive: UTC
    assert as_of("2026-11-02T10:00:00+02:00") == datetime(2026, 11, 2, 8, tzinfo=UTC)
    before = datetime.now(UTC)
    assert before <= as_of("") <= datetime.now(UTC)
    with pytest.raises(ValueError):
        as_of("yesterday")
