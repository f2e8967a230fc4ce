"""The canary_evidence sensor: while a canary runs, new predictions or labels re-evaluate
edge/rollouts at once instead of at the next cadence tick; once per piece of evidence, and
never beside an evaluation that is already queued or running."""

from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from mfg_assets.defs.automation import DEPLOYMENT_PRIORITY, PRIORITY_TAG
from mfg_assets.defs.edge import ROLLOUTS_KEY, cadence_tick_due, canary_evidence_sensor
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.edge.store import BundleStore
from mfg_assets.fleet import rollout as ro
from mfg_assets_tests.edge.helpers import fleet_store

EDGES = ("edge-weld1", "edge-weld2")
PREDICTIONS = dg.AssetKey(["silver", "edge_predictions"])
LABELS = dg.AssetKey(["features", "sensor_windows"])


@pytest.fixture
def store(tmp_path) -> BundleStore:
    return fleet_store(tmp_path / "store", "anomaly", EDGES)


def evaluate(instance: dg.DagsterInstance, lake):
    context = dg.build_sensor_context(
        instance=instance, resources={"lakehouse": LakehouseResource(root=lake.root)})
    return canary_evidence_sensor(context)


def landed(instance: dg.DagsterInstance, key: dg.AssetKey) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))


def test_new_evidence_re_evaluates_a_running_canary_once(lake, store):
    instance = dg.DagsterInstance.ephemeral()
    landed(instance, PREDICTIONS)
    assert evaluate(instance, lake).skip_message == "no canary running"

    started = ro.start_rollout(
        lake, store, model="sensor_anomaly", version=2,
        candidate_bundles={e: f"anomaly-v2-{e}" for e in EDGES}, canary_edges=["edge-weld1"],
        now=datetime(2026, 11, 23, 0, 31, tzinfo=UTC))
    landed(instance, ROLLOUTS_KEY)  # the run that started the canary
    assert "no new predictions or labels" in evaluate(instance, lake).skip_message

    landed(instance, PREDICTIONS)
    request = evaluate(instance, lake)
    assert isinstance(request, dg.RunRequest), request
    assert request.asset_selection == [ROLLOUTS_KEY]
    assert request.tags[PRIORITY_TAG] == DEPLOYMENT_PRIORITY
    assert request.tags["mfg/rollouts"] == started.rollout_id

    landed(instance, ROLLOUTS_KEY)  # that evaluation ran: the same evidence asks nothing more
    assert "no new predictions or labels" in evaluate(instance, lake).skip_message

    landed(instance, LABELS)  # new fault labels count too, but not beside a running evaluation
    running = create_run_for_test(instance, job_name="__ASSET_JOB",
                                  asset_selection=frozenset({ROLLOUTS_KEY}),
                                  status=dg.DagsterRunStatus.STARTED)
    assert "queued or running" in evaluate(instance, lake).skip_message
    instance.report_run_failed(running)
    again = evaluate(instance, lake)
    assert isinstance(again, dg.RunRequest) and again.run_key != request.run_key

    ro.save(lake, replace(ro.load(lake, started.rollout_id), state="promoted"))
    landed(instance, PREDICTIONS)
    assert evaluate(instance, lake).skip_message == "no canary running"


def test_the_cadence_is_due_only_when_no_evaluation_ran_since_its_last_tick():
    """The rollout cadence moved from the asset's automation condition (a run every tick,
    canary or not: `make dev` on an idle lakehouse re-evaluated rollouts every 10 minutes)
    into this sensor, which asks only while a canary runs."""
    from datetime import timedelta

    instance = dg.DagsterInstance.ephemeral()
    yearly = "0 0 1 1 *"  # no tick falls between an evaluation and a second later
    now = datetime.now(UTC)
    assert cadence_tick_due(instance, yearly, now) is not None  # never evaluated
    landed(instance, ROLLOUTS_KEY)  # an evaluation now
    assert cadence_tick_due(instance, yearly, now + timedelta(seconds=1)) is None
    later = cadence_tick_due(instance, yearly, now + timedelta(days=400))
    assert later is not None and later > now
