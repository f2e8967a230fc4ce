"""`mfg demo`'s pieces: the misbehaving device lands in quarantine with its reasons, the plan's
steps run as named jobs, the canary is decided from its evidence, the timeline ends now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from mfg_assets import plan
from mfg_assets.defs.edge import RolloutConfig
from mfg_assets.demo import (
    BAD_DEVICE,
    LIVE_EDGES,
    LIVE_HOURS,
    _rollout_config,
    demo_start,
    misbehaving_messages,
    write_misbehaving,
)
from mfg_assets.fleet import rollout as ro
from mfg_assets.lake.registry import table
from mfg_assets.sim import SimConfig, write_replay
from mfg_assets_tests.edge.helpers import fleet_store

START = datetime(2026, 11, 2, tzinfo=UTC)


def test_misbehaving_device_breaks_the_contract_five_ways():
    lines = misbehaving_messages(SimConfig(start=START, duration_h=2), every_s=600)
    assert len(lines) == 12
    assert {line["ts"] for line in lines} == {
        int((START + timedelta(minutes=10 * i)).timestamp() * 1000) for i in range(12)}
    assert all(BAD_DEVICE in line["topic"] for line in lines)


@pytest.mark.integration
def test_bad_device_lands_in_quarantine_with_reasons_in_a_named_job(data_dir, lake):
    config = SimConfig(seed=4, start=START, duration_h=2, sources=("welding",))
    write_replay(config, data_dir / "replay" / "good")
    sent = write_misbehaving(config, data_dir / "replay" / "bad")
    instance = dg.DagsterInstance.ephemeral()
    runner = plan.Runner(instance, plan.resources())
    [result] = runner.run(plan.BRONZE)
    assert result.success

    quarantine = lake.read(table("bronze.quarantine"))
    mine = quarantine.filter(pl.col("topic").str.contains(BAD_DEVICE))
    assert mine.height == sent == 8  # every bad message, none silently dropped
    assert sorted(mine.get_column("reason_code").unique()) == [
        "bad_payload", "schema", "unknown_topic"]
    # each reason says what is wrong, not just a code
    reasons = " | ".join(mine.get_column("reason").to_list())
    assert "invalid JSON" in reasons and "must be number" in reasons
    assert "machineType" in reasons
    landed = lake.read(table("bronze.sensor_readings"))
    assert landed.height > 0 and BAD_DEVICE not in landed.get_column("asset_id").to_list()

    # the run is the named job demo_bronze, tagged with its plan step
    run = instance.get_run_by_id(result.run_id)
    assert run.job_name == "demo_bronze"
    assert run.tags[plan.STEP_TAG] == "bronze"


def test_every_plan_step_is_a_named_job_in_the_code_location():
    from mfg_assets.definitions import defs

    for step in plan.STEPS:
        job = defs.resolve_job_def(step.job_name)
        assert job.name == f"demo_{step.name}"
        assert job.tags[plan.STEP_TAG] == step.name


def test_history_and_live_hours_end_now():
    now = datetime(2026, 12, 7, 14, 37, tzinfo=UTC)
    start = demo_start(48.0, now)
    end = start + timedelta(hours=48.0 + sum(LIVE_HOURS))
    assert end == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


def _predictions(edge: str, bundle: str, n: int, wrong: int, t0: datetime) -> pl.DataFrame:
    return pl.DataFrame({
        "edge_id": [edge] * n, "bundle_id": [bundle] * n,
        "source_id": [f"{edge}/{i}" for i in range(n)],
        "value": ["true" if i < wrong else "false" for i in range(n)],
        "latency_ms": [1.0] * n, "ts": [t0 + timedelta(seconds=i) for i in range(n)]})


def _labels(n: int) -> pl.DataFrame:
    return pl.DataFrame({"source_id": [f"{e}/{i}" for e in LIVE_EDGES for i in range(n)],
                         "label": ["false"] * (2 * n)})


@pytest.mark.parametrize(("canary_wrong", "state"), [(0, "promoted"), (12, "rolled_back")])
def test_canary_is_decided_from_its_evidence(lake, tmp_path, canary_wrong, state):
    """The demo's rollout config: too little evidence waits; enough decides, either way."""
    settings = RolloutConfig(**_rollout_config()["ops"]["edge__rollouts"]["config"]).settings()
    assert settings.canary_edges == (LIVE_EDGES[0],)
    store = fleet_store(tmp_path / "bundles", "anomaly", LIVE_EDGES)
    t0 = datetime(2026, 12, 7, 12, tzinfo=UTC)
    rollout = ro.start_rollout(
        lake, store, model="sensor_anomaly", version="2",
        candidate_bundles={e: f"anomaly-v2-{e}" for e in LIVE_EDGES},
        canary_edges=settings.canary_edges, policy=settings.policy, now=t0)
    canary, control = LIVE_EDGES
    n = settings.policy.min_predictions
    few = pl.concat([_predictions(canary, f"anomaly-v2-{canary}", n - 1, 0, t0),
                     _predictions(control, f"anomaly-v1-{control}", n - 1, 0, t0)])
    waited = ro.advance(lake, store, rollout.rollout_id, few, _labels(n), policy=settings.policy,
                        now=t0 + timedelta(minutes=5))
    assert waited.state == "canary" and "not enough data" in waited.reason

    enough = pl.concat([_predictions(canary, f"anomaly-v2-{canary}", n, canary_wrong, t0),
                        _predictions(control, f"anomaly-v1-{control}", n, 0, t0)])
    decided = ro.advance(lake, store, rollout.rollout_id, enough, _labels(n),
                         policy=settings.policy, now=t0 + timedelta(minutes=10))
    assert decided.state == state
    assert "accuracy" in decided.reason
    expected = f"anomaly-v2-{canary}" if state == "promoted" else f"anomaly-v1-{canary}"
    assert store.assignment(canary).bundle_id == expected
