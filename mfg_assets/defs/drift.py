"""Drift: ``monitoring/drift_report`` measures it, the ``model_drift`` sensor acts on it.

The report compares, per model family, the rows its champion trained on (the feature
table's Delta version recorded on the MLflow model version) with the most recent rows,
plus the edge predictions and, where QA labels exist, accuracy. The statistics are plain
functions in :mod:`mfg_assets.ml.drift`; this module reads, writes and wires.

The sensor reads the latest evaluation from ``monitoring.drift`` and asks for a retrain
(the feature table, the challenger and its champion step behind the blocking gate) once per
piece of drift evidence: same reference window and same drifted features = same evidence.
"""


import base64
import json
import logging
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from mfg_assets.defs.automation import (
    PRIORITY_TAG,
    rebuild_on_upstream_change,
    sensor_interval,
    whole_number_env,
)
from mfg_assets.defs.features import feature_key
from mfg_assets.defs.metadata import table_metadata
from mfg_assets.defs.models import MlflowResource, champion_key, model_key
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.ml import drift as dm

OWNER = "team:ml-engineering"
DRIFT_TABLE = "monitoring.drift"
TRIGGER_TAG = "mfg/trigger"
REASON_TAG = "mfg/drift_reason"
log = logging.getLogger(__name__)


class DriftConfig(dg.Config):
    families: list[str] = Field(default_factory=lambda: list(dm.FAMILY_INPUTS))
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

    def thresholds(self) -> dm.DriftThresholds:
        return dm.DriftThresholds(psi=self.psi, ks_alpha=self.ks_alpha, share=self.share,
                                  any_feature=self.any_feature)


def training_window(
    lake: Lake, mlflow: MlflowResource | None, family: str
) -> tuple[tuple[datetime, datetime] | None, str]:
    """The time range of the feature rows the champion trained on, and where it came from."""
    inputs = dm.FAMILY_INPUTS[family]
    if mlflow is None:
        return None, "oldest window"
    try:
        from mfg_assets.ml.registry import DATA_TAG_PREFIX, registered_name

        champion = mlflow.registry().champion(registered_name(family))
        version = None if champion is None else champion.tags.get(
            f"{DATA_TAG_PREFIX}{inputs.table}")
        if version in (None, "None"):
            return None, "oldest window (no champion)"
        span = lake.scan(table(inputs.table), int(version)).select(
            pl.col(inputs.ts).min().alias("a"), pl.col(inputs.ts).max().alias("b")).collect()
        start, end = span.row(0)
        if start is None:
            return None, "oldest window (empty training version)"
        return (start, end), f"training {inputs.table}@{version}"
    except Exception as exc:  # a lost tracking server must not stop monitoring
        return None, f"oldest window (champion unknown: {type(exc).__name__})"


def champion_scorer(mlflow: MlflowResource | None, family: str) -> dm.Scorer | None:
    """The champion's predictions for label-based error drift (regressors with a target)."""
    inputs = dm.FAMILY_INPUTS[family]
    if mlflow is None or inputs.target is None:
        return None
    try:
        from mfg_assets.ml.families import family as family_module
        from mfg_assets.ml.registry import registered_name

        module = family_module(family)
        registry = mlflow.registry()
        champion = registry.champion(registered_name(family))
        if champion is None:
            return None
        with tempfile.TemporaryDirectory(prefix="mfg-drift-") as tmp:
            model, info = registry.load(module, champion, Path(tmp))
        return dm.Scorer(predict=model.predict, target=inputs.target,
                         unseen=lambda frame: module.unseen_rows(frame, info))
    except Exception as exc:  # a lost tracking server must not stop monitoring
        log.warning("no champion scorer for %s: %s", family, exc)
        return None


def compute_drift(
    lake: Lake,
    config: DriftConfig,
    mlflow: MlflowResource | None = None,
    now: datetime | None = None,
) -> tuple[list[dm.DriftReport], pl.DataFrame, dict[str, Any]]:
    """Reports per family, the rows for ``monitoring.drift`` and the input versions read."""
    now = now or datetime.now(UTC)
    versions: dict[str, int | None] = {}
    frames: dict[str, pl.DataFrame] = {}

    def read(name: str) -> pl.DataFrame:
        if name not in frames:
            versions[name] = lake.version(table(name))
            frames[name] = lake.read(table(name), versions[name])
        return frames[name]

    predictions = read("silver.edge_predictions")
    labels = read("silver.inspection_images").filter(pl.col("label").is_not_null()).select(
        pl.col("image_id").alias("source_id"), "label")
    reports, rows = [], []
    for family in config.families:
        inputs = dm.FAMILY_INPUTS[family]
        window, source = (None, "oldest window")
        if config.reference == "training":
            window, source = training_window(lake, mlflow, family)
        report = dm.family_drift(
            family, read(inputs.table), recent=timedelta(hours=config.recent_hours),
            reference=window,
            reference_span=None if window else timedelta(hours=config.reference_hours),
            predictions=predictions, labels=labels, thresholds=config.thresholds(),
            scorer=champion_scorer(mlflow, family),
        )
        reports.append(report)
        rows.append(report.features.with_columns(
            pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("computed_at"),
            pl.lit(family).alias("family"),
            pl.lit(report.reference.start, pl.Datetime("us", "UTC")).alias("reference_start"),
            pl.lit(report.reference.end, pl.Datetime("us", "UTC")).alias("reference_end"),
            pl.lit(report.recent.start, pl.Datetime("us", "UTC")).alias("recent_start"),
            pl.lit(report.recent.end, pl.Datetime("us", "UTC")).alias("recent_end"),
            pl.lit(source).alias("reference_source"),
            pl.lit(report.drifted).alias("family_drifted"),
            pl.lit(report.reason).alias("reason"),
            pl.lit(report.evidence_id).alias("evidence_id"),
        ))
    out = pl.concat(rows, how="diagonal_relaxed") if rows else table(DRIFT_TABLE).empty()
    return reports, out.select(list(table(DRIFT_TABLE).polars_schema)), versions


def drift_markdown(reports: list[dm.DriftReport]) -> str:
    lines = ["| family | drifted | reason | top features (PSI / KS p) |", "|---|---|---|---|"]
    for r in reports:
        top = ", ".join(f"{dm.label(row)} ({row['psi']:.2f} / {row['ks_pvalue']:.1e})"
                        for row in r.top(3).iter_rows(named=True))
        lines.append(f"| {r.family} | {'**yes**' if r.drifted else 'no'} | {r.reason} | {top} |")
    return "\n".join(lines)


def histograms(lake: Lake, report: dm.DriftReport, n: int) -> str:
    """Markdown with embedded PNG histograms (reference vs recent) of the top input features."""
    inputs = dm.FAMILY_INPUTS[report.family]
    if n == 0 or report.reference.start is None or report.recent.start is None:
        return ""
    frame = lake.read(table(inputs.table))
    if inputs.kind == "image":
        frame = dm.with_image_stats(frame)
    ts = pl.col(inputs.ts)
    ref = frame.filter(ts.is_between(report.reference.start, report.reference.end))
    rec = frame.filter(ts.is_between(report.recent.start, report.recent.end))
    parts = []
    for row in report.top(n, kind="input").iter_rows(named=True):
        if inputs.segment and row["segment"] != dm.ALL:
            seg = pl.col(inputs.segment) == row["segment"]
            a, b = ref.filter(seg), rec.filter(seg)
        else:
            a, b = ref, rec
        png = dm.histogram_png(a.get_column(row["feature"]).to_numpy(),
                               b.get_column(row["feature"]).to_numpy(),
                               f"{dm.label(row)}: PSI {row['psi']:.2f}")
        parts.append(f"![{dm.label(row)}](data:image/png;base64,"
                     f"{base64.b64encode(png).decode('ascii')})")
    return "\n\n".join(parts)


@dg.asset(
    key=dg.AssetKey(table(DRIFT_TABLE).asset_key_path),
    deps=[
        *{feature_key(i.table) for i in dm.FAMILY_INPUTS.values()},
        dg.AssetKey(table("silver.edge_predictions").asset_key_path),
        dg.AssetKey(table("silver.inspection_images").asset_key_path),
    ],
    group_name="monitoring",
    kinds={"polars", "delta"},
    owners=[OWNER],
    description="Data drift per model family: PSI, KS and Wasserstein of every input feature "
    "between the champion's training window and the recent window, edge prediction and "
    "accuracy drift, and a verdict with its reason (monitoring.drift). The drift sensor "
    "retrains a family when it drifts.",
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
    reports, rows, versions = compute_drift(lake, config, mlflow)
    spec = table(DRIFT_TABLE)
    write = lake.append(spec, rows, **{f"mfg.read.{k}": str(v) for k, v in versions.items()})
    meta = table_metadata(lake, spec, write)
    meta["inputs_read"] = dg.MetadataValue.json(versions)
    meta["drift"] = dg.MetadataValue.md(drift_markdown(reports))
    meta["drifted_families"] = dg.MetadataValue.json([r.family for r in reports if r.drifted])
    for r in reports:
        context.log.info(r.reason)
        plots = histograms(lake, r, config.plots)
        if plots:
            meta[f"histograms/{r.family}"] = dg.MetadataValue.md(plots)
    return dg.MaterializeResult(metadata=meta)


# -- the sensor --------------------------------------------------------------------------

FAMILIES_TAG = "mfg/families"  # the families a drift retrain covers (comma-separated)
RETRAIN_BUDGET_ENV = "MFG_DRIFT_RETRAIN_BUDGET"
# The instance's tag_concurrency_limits cap runs with this tag (dagster.yaml: one at a time).
WORKLOAD_TAG = "mfg/workload"
# Families whose champions run on edge devices go first: their drift is served on the line.
# Everything else still goes ahead of routine runs.
RETRAIN_PRIORITY = {"sensor_anomaly": 20, "vision_defect": 20}
ROUTINE_RETRAIN_PRIORITY = 10
# The gate of a drift retrain compares challenger and champion on the hold-out rows of the
# feature table's last DRIFT_GATE_HOURS (TrainConfig.gate_recent_hours): the whole table is
# mostly the pre-drift normal, where a model that fixes the drift does not win. Not the
# report's 6 h recent window: the families score only their time-block test rows (1 h
# blocks, 3 per 20 h cycle, up to 7 h apart), so 6 h can hold no test row at all; 12 h
# always holds at least one whole test hour and is still mostly post-drift by the time a
# drift is detected and retrained.
DRIFT_GATE_HOURS = 12.0
# After a drift retrain made a new champion, the family's drift waits this long before the
# next drift retrain (the report still records it; the nightly cadence still retrains).
DRIFT_RETRAIN_COOLDOWN = timedelta(hours=6)
# Drift retrains in a row that made no champion (the gate refused, or the run failed): the
# first is retried at once (a few more hours of post-drift data often decide the gate),
# after the second the family waits this long, then twice as long after each further one,
# up to the cooldown. A drift the retrained model cannot beat the champion on is not hurting
# the champion; without the backoff, a drift verdict that does not go away (a shift pattern
# the reference does not match) retrained the family every minute in the loop.
DRIFT_REFUSAL_BACKOFF = timedelta(minutes=5)


def refusal_backoff(refusals: int) -> timedelta:
    """How long a family's drift waits after ``refusals`` fruitless drift retrains in a row."""
    if refusals < 2:
        return timedelta(0)
    return min(DRIFT_REFUSAL_BACKOFF * 2 ** (refusals - 2), DRIFT_RETRAIN_COOLDOWN)


def latest_drift(lake: Lake) -> pl.DataFrame:
    """(family, evidence_id, reason, computed_at) of the latest evaluation of each drifted
    family."""
    spec = table(DRIFT_TABLE)
    if not lake.exists(spec):
        return pl.DataFrame(schema={"family": pl.String, "evidence_id": pl.String,
                                    "reason": pl.String,
                                    "computed_at": pl.Datetime("us", "UTC")})
    latest = lake.scan(spec).filter(
        pl.col("computed_at") == pl.col("computed_at").max().over("family"))
    return (latest.filter(pl.col("family_drifted"))
            .select("family", "evidence_id", "reason", "computed_at").unique()
            .sort("family").collect())


def _families(record: dg.RunRecord) -> list[str]:
    return [f for f in record.dagster_run.tags.get(FAMILIES_TAG, "").split(",") if f]


def _never_started(record: dg.RunRecord) -> bool:
    """Failed before its first step: the run could not be launched (a code server timeout
    on a busy host, a lost run worker). No model was tried: the evidence is still open."""
    return (record.dagster_run.status == dg.DagsterRunStatus.FAILURE
            and record.start_time is None)


def busy_families(instance: dg.DagsterInstance, drifted: pl.DataFrame,
                  cooldown: timedelta = DRIFT_RETRAIN_COOLDOWN,
                  now: datetime | None = None) -> set[str]:
    """Families not to act on now: a drift retrain of theirs is still running, or their
    latest evidence predates the end of the last one (the report has not looked at the
    retrained model yet), or their last drift retrain made a new champion less than
    ``cooldown`` ago. Without the first two, every refreshed report with one more drifted
    feature would queue another retrain of the same family. Without the cooldown, a new
    champion would be retrained at once: it learned the new normal from a few hours among
    days of the old one, so its training rows still differ from the recent ones and the
    report still says drifted (measured in the loop: a second retrain a minute after the
    first one's champion, and a third queued behind it). And after fruitless retrains in a
    row, for ``refusal_backoff`` of their number."""
    records = instance.get_run_records(dg.RunsFilter(tags={TRIGGER_TAG: "drift"}), limit=50)
    evaluated = {row["family"]: row["computed_at"] for row in drifted.iter_rows(named=True)}
    now = now or datetime.now(UTC)
    busy: set[str] = set()
    refusals: Counter[str] = Counter()
    last_refused: dict[str, datetime] = {}
    succeeded: set[str] = set()  # the run of refusals of these families has ended
    for record in records:  # newest first
        families = _families(record)
        if not record.dagster_run.is_finished:
            busy.update(families)
            continue
        if _never_started(record):
            continue
        ended = datetime.fromtimestamp(record.end_time, UTC) if record.end_time else None
        if ended is None:
            continue
        busy.update(f for f in families if f in evaluated and evaluated[f] < ended)
        # SUCCESS: the champion step ran, i.e. the gate passed (a refusal fails the run)
        if record.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            if now - ended < cooldown:
                busy.update(families)
            succeeded.update(families)
            continue
        for family in set(families) - succeeded:
            refusals[family] += 1
            last_refused.setdefault(family, ended)
    busy.update(f for f, n in refusals.items() if now - last_refused[f] < refusal_backoff(n))
    return busy


def relaunch(instance: dg.DagsterInstance) -> dict[str, str]:
    """Family -> id of its latest drift retrain when that one never started: ask again."""
    latest: dict[str, dg.RunRecord] = {}
    for record in instance.get_run_records(dg.RunsFilter(tags={TRIGGER_TAG: "drift"}),
                                           limit=50):  # newest first
        for family in _families(record):
            latest.setdefault(family, record)
    return {f: r.dagster_run.run_id for f, r in latest.items() if _never_started(r)}


def retrain_budget() -> int | None:
    """Trials per drift retrain: ``MFG_DRIFT_RETRAIN_BUDGET``, else the models' default."""
    return whole_number_env(RETRAIN_BUDGET_ENV, None)


def _priority(family: str) -> int:
    return RETRAIN_PRIORITY.get(family, ROUTINE_RETRAIN_PRIORITY)


def retrain_requests(
    drifted: pl.DataFrame,
    acted: dict[str, str],
    busy: set[str] | frozenset[str] = frozenset(),
    budget: int | None = None,
    retry: dict[str, str] | None = None,
) -> tuple[list[dg.RunRequest], dict[str, str]]:
    """One run per drifted family with evidence not acted on yet: its feature table, the
    challenger and the champion step behind the gate. Families in ``busy`` wait (their
    evidence is not marked as acted on). One run per family, not per feature table: two
    families on one table (anomaly and forecast) then queue separately, and the instance's
    limit on ``mfg/workload=training`` runs them one after the other, edge-served families
    first (``RETRAIN_PRIORITY``), so the fast one's champion does not wait for the slow
    one's search nor share the cores with it. ``retry``: family -> the
    retrain run that never started; its evidence is requested again under a new run key.
    The retrain's gate judges on the last ``DRIFT_GATE_HOURS`` of the feature table."""
    requests, cursor, retry = [], dict(acted), retry or {}
    # Highest priority first: the run queue dequeues as runs arrive, so a family submitted
    # a second earlier would take the one training slot whatever its priority.
    rows = sorted(drifted.iter_rows(named=True),
                  key=lambda r: (-_priority(r["family"]), r["family"]))
    for row in rows:
        family = row["family"]
        again = family in retry and acted.get(family) == row["evidence_id"]
        if (acted.get(family) == row["evidence_id"] and not again) or family in busy:
            continue
        cursor[family] = row["evidence_id"]
        train = {"gate_recent_hours": DRIFT_GATE_HOURS} | ({"budget": budget} if budget else {})
        ops = {model_key(family).to_python_identifier(): {"config": train}}
        requests.append(dg.RunRequest(
            run_key=f"drift-{family}:{row['evidence_id']}"
            + (f":after-{retry[family][:8]}" if again else ""),
            asset_selection=[feature_key(dm.FAMILY_INPUTS[family].table), model_key(family),
                             champion_key(family)],
            run_config={"ops": ops},
            # ahead of routine runs in the queue: a drifted model is serving bad predictions
            tags={TRIGGER_TAG: "drift", REASON_TAG: row["reason"][:1000],
                  FAMILIES_TAG: family, WORKLOAD_TAG: "training",
                  PRIORITY_TAG: str(_priority(family))},
        ))
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
    drifted = latest_drift(lakehouse.lake())
    busy = busy_families(context.instance, drifted) if drifted.height else set()
    retry = relaunch(context.instance) if drifted.height else {}
    requests, cursor = retrain_requests(drifted, acted, busy, retrain_budget(), retry)
    if not requests:
        waiting = (f" ({', '.join(sorted(busy))} retraining, cooling down after a new "
                   "champion or backing off after refused retrains)") if busy else ""
        return dg.SkipReason(f"no new drift evidence{waiting}")
    for request in requests:
        context.log.info(f"retrain {request.asset_selection}: {request.tags[REASON_TAG]}")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))


drift_assets = [drift_report]
drift_sensors = [model_drift]
