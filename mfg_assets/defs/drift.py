"""Drift: ``monitoring/drift_report`` measures it, the ``model_drift`` sensor acts on it.

The report compares, per model family of the registry (:mod:`mfg_assets.ml.families`), the
rows its champion trained on (the feature table's Delta version recorded on the MLflow model
version) with the most recent rows, plus the edge predictions and, where QA labels exist,
accuracy. The statistics and the retrain policy are plain functions in
:mod:`mfg_assets.ml.drift`; this module only wires them.

The sensor reads the latest evaluation from ``monitoring.drift`` and asks for a retrain
(the feature table, the challenger and its champion step behind the blocking gate) once per
piece of drift evidence: same reference window and same drifted features = same evidence.
"""

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from mfg_assets.defs.automation import PRIORITY_TAG, rebuild_on_upstream_change, sensor_interval
from mfg_assets.defs.features import feature_key
from mfg_assets.defs.metadata import table_metadata
from mfg_assets.defs.models import MlflowResource, champion_key, model_key
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.names import SILVER_EDGE_PREDICTIONS, SILVER_INSPECTION_IMAGES
from mfg_assets.lake.registry import table
from mfg_assets.ml import drift as dm
from mfg_assets.ml.drift import DRIFT_GATE_HOURS, DRIFT_RETRAIN_COOLDOWN, DRIFT_TABLE
from mfg_assets.ml.families import FAMILIES, FamilySpec, spec
from mfg_assets.settings import get_settings

OWNER = "team:ml-engineering"
TRIGGER_TAG = "mfg/trigger"
REASON_TAG = "mfg/drift_reason"
FAMILIES_TAG = "mfg/families"  # the families a drift retrain covers (comma-separated)
# The instance's tag_concurrency_limits cap runs with this tag (dagster.yaml: one at a time).
WORKLOAD_TAG = "mfg/workload"


class DriftConfig(dg.Config):
    families: list[str] = Field(default_factory=lambda: list(FAMILIES))
    recent_hours: float = Field(default=6.0, gt=0, description="Length of the recent window.")
    reference: str = Field(
        default="training",
        description="'training': the rows the champion trained on (falls back to 'oldest' "
        "without a champion); 'oldest': the oldest reference_hours of the table.",
    )
    reference_hours: float = Field(default=24.0, gt=0)
    psi: float = Field(default=0.2, gt=0, description="PSI above which a feature drifts.")
    ks_alpha: float = Field(default=0.01, gt=0, lt=1)
    share: float = Field(default=0.5, gt=0, le=1)
    any_feature: bool = True
    plots: int = Field(default=3, ge=0, description="Histograms of the top features per family.")

    def settings(self) -> dm.DriftSettings:
        return dm.DriftSettings(
            families=tuple(self.families), recent_hours=self.recent_hours,
            reference=self.reference, reference_hours=self.reference_hours,
            thresholds=dm.DriftThresholds(psi=self.psi, ks_alpha=self.ks_alpha,
                                          share=self.share, any_feature=self.any_feature),
            plots=self.plots,
        )


def drift_report_asset(entries: Iterable[FamilySpec]) -> dg.AssetsDefinition:
    """``monitoring/drift``, depending on the feature tables of the registry's families."""

    @dg.asset(
        key=dg.AssetKey(table(DRIFT_TABLE).asset_key_path),
        deps=[
            *{feature_key(entry.drift.table) for entry in entries},
            dg.AssetKey(table(SILVER_EDGE_PREDICTIONS).asset_key_path),
            dg.AssetKey(table(SILVER_INSPECTION_IMAGES).asset_key_path),
        ],
        group_name="monitoring",
        kinds={"polars", "delta"},
        owners=[OWNER],
        description="Data drift per model family: PSI, KS and Wasserstein of every input "
        "feature between the champion's training window and the recent window, edge "
        "prediction and accuracy drift, and a verdict with its reason (monitoring.drift). "
        "The drift sensor retrains a family when it drifts.",
        metadata={"dagster/table_name": DRIFT_TABLE},
        automation_condition=rebuild_on_upstream_change(),
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        config: DriftConfig,
        lakehouse: LakehouseResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        lake = lakehouse.lake()
        run = dm.report_drift(lake, config.settings(), mlflow.registry)
        meta = table_metadata(lake, table(DRIFT_TABLE), run.write)
        meta["inputs_read"] = dg.MetadataValue.json(run.versions)
        meta["drift"] = dg.MetadataValue.md(dm.drift_markdown(run.reports))
        meta["drifted_families"] = dg.MetadataValue.json(
            [r.family for r in run.reports if r.drifted])
        for r in run.reports:
            context.log.info(r.reason)
        for family, plots in run.histograms.items():
            meta[f"histograms/{family}"] = dg.MetadataValue.md(plots)
        return dg.MaterializeResult(metadata=meta)

    return drift_report


drift_report = drift_report_asset(FAMILIES.values())


# -- the sensor --------------------------------------------------------------------------


def past_retrains(instance: dg.DagsterInstance) -> list[dm.PastRetrain]:
    """The latest drift retrain runs, newest first, as the retrain policy reads them."""
    records = instance.get_run_records(dg.RunsFilter(tags={TRIGGER_TAG: "drift"}), limit=50)
    return [
        dm.PastRetrain(
            run_id=r.dagster_run.run_id,
            families=tuple(f for f in r.dagster_run.tags.get(FAMILIES_TAG, "").split(",") if f),
            finished=r.dagster_run.is_finished,
            never_started=(r.dagster_run.status == dg.DagsterRunStatus.FAILURE
                           and r.start_time is None),
            # SUCCESS: the champion step ran, i.e. the gate passed (a refusal fails the run)
            succeeded=r.dagster_run.status == dg.DagsterRunStatus.SUCCESS,
            ended=datetime.fromtimestamp(r.end_time, UTC) if r.end_time else None,
        )
        for r in records
    ]


def busy_families(instance: dg.DagsterInstance, drifted: pl.DataFrame,
                  cooldown: timedelta = DRIFT_RETRAIN_COOLDOWN,
                  now: datetime | None = None) -> set[str]:
    """Families whose drift waits now (:func:`mfg_assets.ml.drift.waiting_families`)."""
    return dm.waiting_families(past_retrains(instance), drifted, cooldown, now)


def relaunch(instance: dg.DagsterInstance) -> dict[str, str]:
    """Family -> id of its latest drift retrain when that one never started: ask again."""
    return dm.never_started(past_retrains(instance))


def retrain_requests(
    drifted: pl.DataFrame,
    acted: dict[str, str],
    busy: set[str] | frozenset[str] = frozenset(),
    budget: int | None = None,
    retry: dict[str, str] | None = None,
) -> tuple[list[dg.RunRequest], dict[str, str]]:
    """A run per retrain of :func:`mfg_assets.ml.drift.plan_retrains`: the family's feature
    table, challenger and champion step behind the gate, its gate judging on the last
    ``DRIFT_GATE_HOURS``; the instance's limit on ``mfg/workload=training`` runs them one
    after the other, in priority order."""
    retrains, cursor = dm.plan_retrains(drifted, acted, busy, retry)
    train = {"gate_recent_hours": DRIFT_GATE_HOURS} | ({"budget": budget} if budget else {})
    # the gate judges the drifted segments' own recent rows (ml/gate.segment_decision)
    segments = ({row["family"]: list(row["segments"] or []) for row in
                 drifted.iter_rows(named=True)} if "segments" in drifted.columns else {})
    requests = [
        dg.RunRequest(
            run_key=r.run_key,
            asset_selection=[feature_key(spec(r.family).drift.table), model_key(r.family),
                             champion_key(r.family)],
            run_config={"ops": {model_key(r.family).to_python_identifier(): {"config": {
                **train, **({"gate_segments": segments[r.family]}
                            if segments.get(r.family) else {})}}}},
            # ahead of routine runs in the queue: a drifted model is serving bad predictions
            tags={TRIGGER_TAG: "drift", REASON_TAG: r.reason[:1000], FAMILIES_TAG: r.family,
                  WORKLOAD_TAG: "training", PRIORITY_TAG: str(r.priority)},
        )
        for r in retrains
    ]
    return requests, cursor


@dg.sensor(
    name="model_drift",
    minimum_interval_seconds=sensor_interval(300),
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=dg.AssetSelection.groups("features", "models"),
    description="Retrains a model family (feature table, challenger, champion behind its "
    "gate) when monitoring.drift says its inputs drifted; once per piece of evidence, one "
    "retrain per family at a time.",
)
def model_drift(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource):
    acted: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    drifted = dm.latest_drift(lakehouse.lake())
    busy = busy_families(context.instance, drifted) if drifted.height else set()
    retry = relaunch(context.instance) if drifted.height else {}
    # trials per drift retrain: MFG_DRIFT_RETRAIN_BUDGET, else the models' default
    budget = get_settings().drift_retrain_budget
    requests, cursor = retrain_requests(drifted, acted, busy, budget, retry)
    if not requests:
        waiting = (f" ({', '.join(sorted(busy))} retraining, cooling down after a new "
                   "champion or backing off after refused retrains)") if busy else ""
        return dg.SkipReason(f"no new drift evidence{waiting}")
    for request in requests:
        context.log.info(f"retrain {request.asset_selection}: {request.tags[REASON_TAG]}")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))


drift_assets = [drift_report]
drift_sensors = [model_drift]
