"""Edge: one signed bundle per edge device, and rollouts of new bundles across the fleet.

Dagster wiring only, over the fleet room: ``edge/bundles`` (partitioned by edge device, the
``edge_devices`` sensor adds those seen in the UNS or registered) runs
``fleet.bundles.build_edge_bundle``; ``edge/rollouts`` runs ``fleet.deploy.run_rollouts``
(canary, compare, promote or roll back; policy in ``fleet.rollout``). With
``require_approval`` a promotion waits for an operator: ``approve: true`` on ``edge/rollouts``,
which is what the ``approve_rollout`` job launches.
"""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from mfg_assets.defs.automation import (
    DEPLOYMENT_PRIORITY,
    IN_FLIGHT,
    PRIORITY_TAG,
    new_edge_or_new_champion,
    on_new_bundles,
    rollout_cadence,
    sensor_interval,
)
from mfg_assets.defs.cost import with_cost
from mfg_assets.defs.features import feature_key
from mfg_assets.defs.metadata import as_metadata, table_metadata
from mfg_assets.defs.models import MlflowResource, champion_key
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.edge.store import BundleStore, default_store_uri
from mfg_assets.fleet import rollout as ro
from mfg_assets.fleet.bundles import (
    BUNDLES,
    BundleSettings,
    build_edge_bundle,
    bundle_summary,
    discover_edges,
)
from mfg_assets.fleet.deploy import (
    DeploySettings,
    as_of,
    rollout_summary,
    run_policy,
    run_rollouts,
)
from mfg_assets.lake.names import (
    FEATURES_SENSOR_WINDOWS,
    SILVER_EDGE_PREDICTIONS,
    SILVER_EDGE_TELEMETRY,
    SILVER_INSPECTION_IMAGES,
)
from mfg_assets.lake.registry import table
from mfg_assets.ml.families import edge_served, spec

OWNER = "team:edge-platform"
EDGE_FAMILIES = edge_served()

edge_devices = dg.DynamicPartitionsDefinition(name="edge_devices")
BUNDLES_KEY = dg.AssetKey(BUNDLES.asset_key_path)
ROLLOUTS_KEY = dg.AssetKey(ro.ROLLOUTS.asset_key_path)


class BundleStoreResource(dg.ConfigurableResource):
    """Where bundles, assignments and device registrations live (``MFG_BUNDLE_STORE``: a
    folder or ``s3://`` URI; ``data/bundles`` by default)."""

    uri: str

    def store(self) -> BundleStore:
        return BundleStore(self.uri)


def edge_resources() -> dict[str, dg.ConfigurableResource]:
    return {"bundle_store": BundleStoreResource(uri=default_store_uri())}


@dg.sensor(
    name="edge_devices",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds every edge device seen in the UNS (its telemetry in bronze/silver) or "
    "registered with `mfg edge register` as a partition of edge/bundles.",
)
def edge_devices_sensor(
    context: dg.SensorEvaluationContext,
    lakehouse: LakehouseResource,
    bundle_store: BundleStoreResource,
) -> dg.SensorResult | dg.SkipReason:
    known = set(context.instance.get_dynamic_partitions(edge_devices.name))
    new = sorted(discover_edges(lakehouse.lake(), bundle_store.store()) - known)
    if not new:
        return dg.SkipReason(f"no new edge devices ({len(known)} known)")
    context.log.info(f"new edge devices: {', '.join(new)}")
    return dg.SensorResult(dynamic_partitions_requests=[edge_devices.build_add_request(new)])


class BundleConfig(dg.Config):
    quantile: float = Field(
        default=0.99, gt=0.0, lt=1.0,
        description="The edge's threshold: this quantile of its scores on its own recent "
        "normal data (ok images / non-fault windows).",
    )
    calibration_rows: int = Field(default=300, ge=10,
                                  description="Most recent normal images/windows to use.")
    int8: bool = Field(default=True, description="Try int8 (kept only within max_int8_loss).")
    max_int8_loss: float = Field(default=0.01, ge=0.0,
                                 description="Accuracy int8 may lose against fp32 (0.01 = 1 "
                                 "point); more loss keeps fp32.")


bundles_condition = new_edge_or_new_champion([champion_key(f) for f in EDGE_FAMILIES])


@dg.asset(
    key=BUNDLES_KEY,
    partitions_def=edge_devices,
    deps=[
        *(champion_key(f) for f in EDGE_FAMILIES),
        *(feature_key(t) for t in sorted({spec(f).feature_table for f in EDGE_FAMILIES})),
        # the edge's place (camera or line edge): read across every day
        dg.AssetDep(dg.AssetKey(table(SILVER_EDGE_TELEMETRY).asset_key_path),
                    partition_mapping=dg.AllPartitionMapping()),
    ],
    group_name="edge",
    kinds={"onnx", "delta"},
    owners=[OWNER],
    description="One signed deployment bundle per edge device: the champion of the edge's "
    f"model family ({', '.join(f'{spec(f).edge_kind}: {f}' for f in EDGE_FAMILIES)}) as ONNX "
    "(int8 where within one point of fp32), with a threshold calibrated on that edge's own "
    "recent normal data. Published to the bundle store; one row per bundle in edge.bundles.",
    metadata={"dagster/table_name": BUNDLES.qualified_name},
    automation_condition=bundles_condition,
)
@with_cost  # cost/* metadata (mfg_assets.defs.cost)
def bundles(
    context: dg.AssetExecutionContext,
    config: BundleConfig,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    bundle_store: BundleStoreResource,
) -> dg.MaterializeResult:
    lake = lakehouse.lake()
    settings = BundleSettings(config.quantile, config.calibration_rows, int8=config.int8,
                              max_int8_loss=config.max_int8_loss)
    try:
        outcome = build_edge_bundle(lake, mlflow.registry(), bundle_store.store(),
                                    context.partition_key, settings)
    except ValueError as exc:  # missing inputs: say which, fail this edge only
        raise dg.Failure(f"{context.partition_key}: {exc}") from exc
    meta = as_metadata(bundle_summary(outcome), paths=("bundle_location",))
    if outcome.bundle is not None:
        meta |= table_metadata(lake, BUNDLES, outcome.write)
    return dg.MaterializeResult(metadata=meta)


class RolloutConfig(dg.Config):
    canary_fraction: float = Field(default=0.25, gt=0.0, lt=1.0,
                                   description="Share of a model's edges in the canary.")
    canary_edges: list[str] = Field(default_factory=list,
                                    description="Explicit canary edges (overrides the fraction).")
    require_approval: bool = Field(default=False,
                                   description="A new rollout's promotion waits for an operator.")
    approve: bool = Field(default=False,
                          description="Operator approval of the running rollout(s): promotes "
                          "one awaiting approval, pre-approves one still in canary.")
    operator: str = Field(default="operator", description="Who approves (recorded).")
    rollout_id: str = Field(default="", description="Approve only this rollout.")
    window_minutes: float = Field(default=60.0, gt=0.0,
                                  description="Compare the most recent window only.")
    min_predictions: int | None = Field(
        default=None, ge=1,
        description="Per group, before deciding (default: MFG_ROLLOUT_MIN_PREDICTIONS, "
        "else 50).")
    min_labelled: int | None = Field(
        default=None, ge=1,
        description="Labelled predictions per group, when labels exist (default: "
        "MFG_ROLLOUT_MIN_LABELLED, else 30).")
    max_accuracy_drop: float = Field(default=0.01, ge=0.0,
                                     description="Canary accuracy loss tolerated (0.01 = 1 pt).")
    as_of: str = Field(default="", description="Evaluate as of this UTC time (ISO; empty: "
                       "now). For replays of past data.")

    def settings(self) -> DeploySettings:
        policy = run_policy(self.canary_fraction, self.window_minutes, self.max_accuracy_drop,
                            self.min_predictions, self.min_labelled)
        return DeploySettings(policy, tuple(self.canary_edges), self.require_approval,
                              self.approve, self.operator, self.rollout_id)

    def now(self) -> datetime:
        return as_of(self.as_of)


# React to new bundles at once; running canaries are re-evaluated by canary_evidence (below).
rollouts_condition = on_new_bundles(BUNDLES_KEY)


@dg.asset(
    key=ROLLOUTS_KEY,
    deps=[
        BUNDLES_KEY,
        dg.AssetKey(table(SILVER_EDGE_PREDICTIONS).asset_key_path),
        dg.AssetKey(table(SILVER_INSPECTION_IMAGES).asset_key_path),
    ],
    group_name="edge",
    kinds={"delta"},
    owners=[OWNER],
    description="Rollouts of new edge bundles: canary subset first, canary vs control over "
    "the latest window of edge predictions (accuracy against QA labels where they exist), "
    "then promoted to the fleet or rolled back automatically; with require_approval a "
    "promotion waits for an operator (approve: true). State in edge.rollouts.",
    metadata={"dagster/table_name": ro.ROLLOUTS.qualified_name},
    automation_condition=rollouts_condition,
)
@with_cost  # cost/* metadata (mfg_assets.defs.cost)
def rollouts(
    context: dg.AssetExecutionContext,
    config: RolloutConfig,
    lakehouse: LakehouseResource,
    bundle_store: BundleStoreResource,
) -> dg.MaterializeResult:
    lake = lakehouse.lake()
    try:
        steps = run_rollouts(lake, bundle_store.store(), config.settings(), config.now())
    except ValueError as exc:  # a bad canary list, an edge without bundle: say so
        raise dg.Failure(str(exc)) from exc
    for step in steps:
        context.log.info(f"{step.model}: {step.action}: {step.detail}")
    meta = as_metadata(rollout_summary(steps), md=("rollouts",))
    meta |= table_metadata(lake, ro.ROLLOUTS, None)
    meta["edge_bundles_version"] = lake.version(BUNDLES)
    return dg.MaterializeResult(metadata=meta)


approve_rollout_job = dg.define_asset_job(
    "approve_rollout",
    selection=dg.AssetSelection.assets(ROLLOUTS_KEY),
    description="Operator approval: promotes the rollouts awaiting approval (edit 'operator' "
    "and, to approve one rollout only, 'rollout_id' in the launchpad).",
    config={"ops": {ROLLOUTS_KEY.to_python_identifier(): {"config": {"approve": True}}}},
)

# What a canary is judged on: predictions, and the labels (QA images, fault windows) they are
# scored against.
CANARY_EVIDENCE = (
    dg.AssetKey(table(SILVER_EDGE_PREDICTIONS).asset_key_path),
    dg.AssetKey(table(SILVER_INSPECTION_IMAGES).asset_key_path),
    feature_key(FEATURES_SENSOR_WINDOWS),
)


def last_materializations(instance: dg.DagsterInstance,
                          keys: list[dg.AssetKey]) -> dict[dg.AssetKey, int]:
    """Storage id of each key's last materialization (keys never materialized: absent)."""
    return {r.asset_entry.asset_key: r.asset_entry.last_materialization_record.storage_id
            for r in instance.get_asset_records(keys)
            if r.asset_entry.last_materialization_record is not None}


def evaluation_in_flight(instance: dg.DagsterInstance) -> bool:
    return any(ROLLOUTS_KEY in (r.dagster_run.asset_selection or ())
               for r in instance.get_run_records(dg.RunsFilter(statuses=list(IN_FLIGHT))))


@dg.sensor(
    name="canary_evidence",
    minimum_interval_seconds=sensor_interval(30),
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=[ROLLOUTS_KEY],
    description="While a canary runs, re-evaluates edge/rollouts as soon as new predictions "
    "or labels land, and at the rollout cadence (MFG_ROLLOUT_CRON) when none do: the canary "
    "is promoted or rolled back once its evidence suffices. Without a canary it requests "
    "nothing (an idle lakehouse stays idle).",
)
def canary_evidence_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource):
    canaries = [r.rollout_id for r in ro.active_rollouts(lakehouse.lake()) if r.state == "canary"]
    if not canaries:
        return dg.SkipReason("no canary running")
    ids = last_materializations(context.instance, [*CANARY_EVIDENCE, ROLLOUTS_KEY])
    evaluated = ids.pop(ROLLOUTS_KEY, None)
    newest = max(ids.values(), default=None)
    fresh = newest is not None and (evaluated is None or newest > evaluated)
    tick = cadence_tick_due(context.instance, rollout_cadence())
    if not fresh and tick is None:
        return dg.SkipReason("no new predictions or labels since the last evaluation")
    if evaluation_in_flight(context.instance):
        return dg.SkipReason("an evaluation of edge/rollouts is queued or running")
    return dg.RunRequest(
        run_key=f"evidence-{newest}" if fresh else f"cadence-{tick.isoformat()}",
        asset_selection=[ROLLOUTS_KEY],
        tags={PRIORITY_TAG: DEPLOYMENT_PRIORITY,
              "mfg/trigger": "canary_evidence" if fresh else "canary_cadence",
              "mfg/rollouts": ",".join(canaries)},
    )


def cadence_tick_due(instance: dg.DagsterInstance, cron: str,
                     now: datetime | None = None) -> datetime | None:
    """The rollout cadence's latest tick when no evaluation ran since it, else None. (The
    cadence lives here, not in the asset's automation condition: there it asked for a run
    every tick whether a canary ran or not.) Dagster's own cron arithmetic, as the
    automation conditions use it."""
    from dagster._utils.schedules import get_latest_completed_cron_tick

    tick = get_latest_completed_cron_tick(cron, now or datetime.now(UTC), "UTC")
    last = instance.get_latest_materialization_event(ROLLOUTS_KEY)
    if last is not None and datetime.fromtimestamp(last.timestamp, UTC) >= tick:
        return None
    return tick


edge_assets = [bundles, rollouts]
edge_sensors = [edge_devices_sensor, canary_evidence_sensor]
edge_jobs = [approve_rollout_job]
