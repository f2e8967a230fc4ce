"""The automation policy, in one place: when each layer rematerializes and how fresh it
must be. Asset modules only reference these names.

    bronze  --(gateway commit observed / replay loaded)-->  silver: latest day follows
    silver  --(any day updated)-->  features: rebuilt
    features --(nightly cadence; the drift sensor requests a retrain with a reason)--> models
    models  --(challenger passed its blocking gate)-->  champion alias moves
    champion --(new champion or new edge)-->  edge bundles  --(changed)-->  rollouts
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

# Cadences: production defaults in settings.py (MFG_SENSOR_INTERVAL_S, MFG_ROLLOUT_CRON), where
# a demo, benchmark or test may shorten them; re-exported here for the asset modules.
from mfg_assets.settings import ROLLOUT_CRON as ROLLOUT_CRON
from mfg_assets.settings import rollout_cadence as rollout_cadence
from mfg_assets.settings import sensor_interval as sensor_interval

AC = dg.AutomationCondition

# -- queue priorities: the QueuedRunCoordinator dequeues higher values first -------------------

PRIORITY_TAG = "dagster/priority"
# Bundles and rollouts go ahead of routine refreshes (0) and behind drift retrains (10-20,
# defs/drift.py): a new champion should not wait behind silver to reach the line.
DEPLOYMENT_PRIORITY = "5"
# Runs that are not finished yet: waiting in the queue, launching or running.
IN_FLIGHT = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
             dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)


def follow_new_data() -> dg.AutomationCondition:
    """Rematerialize the latest daily partition when an upstream table has new data.

    Unlike plain ``eager()``, missing old partitions do not block it: a new plant starts with
    years of empty history and must still follow today's data.
    """
    return (
        AC.in_latest_time_window()
        & (AC.any_deps_updated() | AC.newly_missing()).since_last_handled()
        & ~AC.in_progress()
    ).with_label("follow_new_data")


def rebuild_on_upstream_change() -> dg.AutomationCondition:
    """Unpartitioned tables built from partitioned ones: rebuild when any upstream day
    changed, one run at a time.

    It does not wait for running upstream runs: under live traffic some upstream (edge
    telemetry, predictions) is always being rewritten, and waiting for all of them to be
    idle starved the drift report for minutes. Delta reads are consistent snapshots, so a
    rebuild now is correct, and the upstream run that lands later triggers the next one."""
    return (
        (AC.newly_missing() | AC.any_deps_updated()).since_last_handled()
        & ~AC.in_progress()
    ).with_label("rebuild_on_upstream_change")


def retrain_on_cadence(cron: str = "0 3 * * *") -> dg.AutomationCondition:
    """Models retrain nightly (drift triggers an extra run through the drift sensor): feature
    tables change every few minutes, retraining on each change would waste the cores.

    A model whose code version changed (its family module or registry entry, see
    ml/versioning.py) retrains at the next tick instead of waiting for the night; the
    promotion gate still decides whether it serves. ``code_version_changed`` is true on one
    tick only, so ``since_last_handled`` keeps the request until a run handles it."""
    return (
        (AC.cron_tick_passed(cron) | AC.code_version_changed()).since_last_handled()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label("retrain_nightly_or_new_code")


def promote_when_gate_passes() -> dg.AutomationCondition:
    """Move the champion alias after a new challenger whose blocking gate passed."""
    return (
        AC.any_deps_updated().since_last_handled()
        & AC.all_deps_blocking_checks_passed()
        & ~AC.in_progress()
    ).with_label("promote_when_gate_passes")


def rescore_latest_on_new_champion(champion: dg.AssetKey) -> dg.AutomationCondition:
    """Batch predictions: the latest day is re-scored when the champion moves. Older days
    turn stale (their champion dependency's data version changed) and are backfilled on
    demand: re-scoring a month at every promotion would take the cores from training."""
    return (
        AC.in_latest_time_window()
        & AC.any_deps_updated().allow(dg.AssetSelection.assets(champion)).since_last_handled()
        & ~AC.in_progress()
    ).with_label("rescore_latest_on_new_champion")


def new_edge_or_new_champion(champions: list[dg.AssetKey]) -> dg.AutomationCondition:
    """Bundles rebuild when a champion moves or a new edge appears, not on every feature
    refresh (each rebuild with a new threshold is a new bundle, i.e. a new rollout)."""
    return (
        (AC.newly_missing() | AC.any_deps_updated().allow(dg.AssetSelection.assets(*champions)))
        .since_last_handled()
        & ~AC.in_progress()
    ).with_label("new_edge_or_new_champion")


def on_new_bundles(bundles: dg.AssetKey) -> dg.AutomationCondition:
    """Rollouts react at once to new bundles, once they are all built (a rollout that started
    during a build would miss the bundle still being built). Running canaries are
    re-evaluated by the canary_evidence sensor, on new evidence and at the rollout cadence;
    a cadence here asked for a run every tick whether a canary ran or not."""
    built = dg.AssetSelection.assets(bundles)
    return (
        AC.any_deps_updated().allow(built).since_last_handled()
        & ~AC.any_deps_match(AC.in_progress()).allow(built).with_label("bundles_in_progress")
        & ~AC.in_progress()
    ).with_label("new_bundles")


def on_cadence(cron: str, label: str) -> dg.AutomationCondition:
    return (AC.cron_tick_passed(cron).since_last_handled() & ~AC.in_progress()).with_label(label)


# -- freshness: how stale each layer may get before the UI (and alerts) say so ----------------

SILVER_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=6), warn_window=timedelta(hours=1)
)
FEATURES_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=30), warn_window=timedelta(hours=6)
)
MODELS_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(days=3), warn_window=timedelta(hours=36)
)
