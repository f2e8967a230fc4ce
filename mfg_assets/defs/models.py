"""Models: per family a challenger trained in MLflow, a promotion gate, and the champion.

``models/<family>`` runs the hyper-parameter search (MLflow parent run, one child run per
trial), registers the best model as a new version with alias ``challenger`` and evaluates
the current ``champion`` again on the SAME hold-out rows. Its blocking check
``beats_champion`` is the promotion gate (the pattern of Dagster's ``project_ml`` example):
when it fails, ``models/<family>_champion`` does not run and the champion alias stays where
it was. A drift retrain (``TrainConfig.gate_recent_hours``, set by the drift sensor) moves
the comparison to the hold-out rows of the table's last hours: after a drift the whole
table is mostly the old normal, where a model that fixes the drift cannot win. The model
code is plain Python in ``mfg_assets.ml`` and the gate's policy is
:mod:`mfg_assets.ml.gate`; this module only wires them. One challenger and one champion
asset per entry of the family registry (:mod:`mfg_assets.ml.families`).

Why not ``dagster-mlflow``: its ``mlflow_tracking`` resource is a legacy function resource
that opens ONE fluent, process-global MLflow run per Dagster run at resource init and only
closes it from the ``end_mlflow_on_run_finished`` op hook (which ``dg.materialize`` and
asset jobs do not attach by default; it also unregisters MLflow's atexit cleanup). That
fits one-run-per-job ops, not a parent run per family with child runs per trial that must
always be closed; so a small ``ConfigurableResource`` hands out an explicit ``MlflowClient``.
"""


import base64
from collections.abc import Iterable
from typing import Any

import dagster as dg
from pydantic import Field

from mfg_assets.defs.automation import (
    MODELS_FRESHNESS,
    promote_when_gate_passes,
    retrain_on_cadence,
)
from mfg_assets.defs.checkpoints import training_checkpoints
from mfg_assets.defs.cost import with_cost
from mfg_assets.defs.features import OWNER, feature_key
from mfg_assets.defs.metadata import (
    as_metadata,
    mlflow_figure,
    mlflow_model_link,
    mlflow_run_link,
)
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.labeling.training import training_frame
from mfg_assets.lake.lineage import read_lineage
from mfg_assets.lake.registry import table
from mfg_assets.ml.base import SplitRefused
from mfg_assets.ml.families import FAMILIES, FamilySpec, family
from mfg_assets.ml.gate import (
    DRIFT_TOLERANCE,
    MIN_SEGMENT_POSITIVES,
    MIN_SEGMENT_ROWS,
    Challenge,
    GateSettings,
    NotPromotable,
    WaitingForEvidence,
    challenge,
    challenge_summary,
    gate_summary,
    promote,
)
from mfg_assets.ml.registry import ModelRegistry, registered_name
from mfg_assets.ml.versioning import family_code_version
from mfg_assets.settings import get_settings

GATE = "beats_champion"


class MlflowResource(dg.ConfigurableResource):
    """Where MLflow tracks runs and registers models (``MLFLOW_TRACKING_URI`` in production;
    a sqlite store under ``data/mlflow`` by default)."""

    tracking_uri: str
    artifact_root: str = ""  # empty: the tracking server's own artifact store

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, self.artifact_root)


def model_resources() -> dict[str, dg.ConfigurableResource]:
    settings = get_settings()
    return {
        "mlflow": MlflowResource(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=settings.mlflow_artifact_root,
        )
    }


class TrainConfig(dg.Config):
    budget: int = Field(default=3, ge=1, description="Hyper-parameter candidates to train.")
    seed: int = Field(default=0, ge=0, description="Seed of the search and of training.")
    margin: float = Field(
        default=0.01, ge=0.0,
        description="Relative improvement of the primary hold-out metric over the champion "
        "needed to promote (0.01 = 1 % better).",
    )
    tolerance: float = Field(
        default=DRIFT_TOLERANCE, ge=0.0,
        description="A drift retrain judged on the quiet metric (its recent window cannot rank "
        "on the primary one): how much worse, relative, the challenger's primary metric on the "
        "whole hold-out may be than the champion's (0.1 = 10 %; the absolute floors apply "
        "anyway).",
    )
    threads: int = Field(
        default=1, ge=1,
        description="BLAS/OpenMP threads for training. One by default: on a shared host "
        "OpenMP threads spinning against other work make scikit-learn 20x slower.",
    )
    gate_recent_hours: float = Field(
        default=0.0, ge=0.0,
        description="0: the gate compares challenger and champion on the hold-out rows of "
        "the whole feature table. > 0: on the hold-out rows of its last N hours (by the "
        "family's time column), the data the model will face; the drift sensor sets it, "
        "because after a drift the whole table is mostly the old normal. Falls back to "
        "the whole hold-out when the recent one cannot be scored.",
    )
    gate_segments: list[str] = Field(
        default_factory=list,
        description="Segments (machine, camera) whose drift was declared; the drift sensor "
        "sets them. The challenger must win on their recent rows and not be worse than the "
        "champion elsewhere by more than `tolerance`; with fewer than `min_segment_rows` "
        "scored rows (or `min_segment_positives` positives) there, the gate waits.",
    )
    min_segment_rows: int = Field(default=MIN_SEGMENT_ROWS, ge=1)
    min_segment_positives: int = Field(default=MIN_SEGMENT_POSITIVES, ge=0)

    def settings(self, run_id: str, segment_column: str | None = None) -> GateSettings:
        return GateSettings(budget=self.budget, seed=self.seed, margin=self.margin,
                            tolerance=self.tolerance, threads=self.threads,
                            recent_hours=self.gate_recent_hours,
                            tags={"dagster.run_id": run_id},
                            segments=tuple(self.gate_segments), segment_column=segment_column,
                            min_segment_rows=self.min_segment_rows,
                            min_segment_positives=self.min_segment_positives)


def model_key(family: str) -> dg.AssetKey:
    return dg.AssetKey(["models", family])


def champion_key(family: str) -> dg.AssetKey:
    return dg.AssetKey(["models", f"{family}_champion"])


# -- challenger + gate -----------------------------------------------------------------


def challenger_asset(entry: FamilySpec) -> dg.AssetsDefinition:
    key = model_key(entry.name)

    @dg.asset(
        key=key,
        deps=[feature_key(entry.feature_table)],
        group_name="models",
        kinds=set(entry.kinds),
        owners=[OWNER],
        description=entry.description,
        metadata={"mlflow/registered_model": registered_name(entry.name)},
        # retrain when the family's module or registry entry changes (ml/versioning.py)
        code_version=family_code_version(entry),
        automation_condition=retrain_on_cadence(),
        freshness_policy=MODELS_FRESHNESS,
        check_specs=[
            dg.AssetCheckSpec(
                GATE, asset=key, blocking=True,
                description="Promotion gate: the challenger meets the family's floors and "
                "beats the champion on the same hold-out rows by the configured margin.",
            )
        ],
    )
    @with_cost  # cost/* metadata (mfg_assets.defs.cost)
    def _challenger(
        context: dg.AssetExecutionContext,
        config: TrainConfig,
        lakehouse: LakehouseResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        module = family(entry.name)  # raises when the module disagrees with its entry
        lake = lakehouse.lake()
        source = table(entry.feature_table)
        version = lake.version(source)
        if version is None:
            raise dg.Failure(f"{entry.feature_table} does not exist yet: materialize "
                             f"{feature_key(entry.feature_table).to_user_string()} first")
        # pinned: the version we record; operators' verdicts replace labels where given
        features, labels = training_frame(lake, entry, lake.read(source, version))
        data_versions = {entry.feature_table: version, **read_lineage(lake, source, version),
                         **labels.versions}  # a new verdict is a new input
        try:
            registry = mlflow.registry()  # a retry of this run resumes its training loops
            with training_checkpoints(context, registry, data_versions, config):
                outcome = challenge(registry, module, features, data_versions,
                                    entry.drift.ts,
                                    config.settings(context.run.run_id, entry.drift.segment),
                                    context.log.warning)
        except SplitRefused as exc:  # the data cannot judge a model: say what to add
            raise dg.Failure(f"{entry.name}: cannot split {entry.feature_table} "
                             f"({features.height} rows) to judge a model: {exc}") from None
        context.log.info(f"{entry.name} v{outcome.result.version}: gate "
                         f"{outcome.decision.verdict}: {outcome.decision.reason}")
        return dg.MaterializeResult(
            metadata={**challenger_metadata(outcome, features.height),
                      **labels.metadata()},
            data_version=dg.DataVersion(f"{outcome.result.model_name}/{outcome.result.version}"),
            check_results=[gate_result(outcome, config.margin)],
        )

    return _challenger


def challenger_metadata(outcome: Challenge, feature_rows: int) -> dict[str, Any]:
    """What a person reading the catalog wants to see of a search and its verdict
    (:func:`mfg_assets.ml.gate.challenge_summary`), with links to MLflow and its figures."""
    result = outcome.result
    meta = as_metadata(challenge_summary(outcome, feature_rows), paths=("model_artifacts",))
    meta["mlflow_run"] = mlflow_run_link(result.parent_run_id)  # `make mlflow` serves the UI
    meta["mlflow_model"] = mlflow_model_link(result.model_name, result.version)
    for name, png in result.figures.items():
        stem = name.removesuffix(".png")
        # inline on the asset page (served by the MLflow UI), and the bytes themselves
        # behind "[Show Markdown]" for when no MLflow UI runs
        meta[f"plot/{stem}"] = mlflow_figure(result.parent_run_id, f"figures/{stem}.png", stem)
        encoded = base64.b64encode(png).decode("ascii")
        meta[f"figure/{stem}"] = dg.MetadataValue.md(
            f"![{name}](data:image/png;base64,{encoded})")
    return meta


def gate_result(outcome: Challenge, margin: float) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=GATE,
        passed=outcome.decision.passed,
        # waiting for evidence is a warning, not a refusal: the champion step runs, leaves
        # the alias where it is, and the run does not count as a failed retrain
        severity=(dg.AssetCheckSeverity.WARN if outcome.decision.waiting
                  else dg.AssetCheckSeverity.ERROR),
        metadata=as_metadata(gate_summary(outcome, margin)),
    )


# -- champion --------------------------------------------------------------------------


def champion_asset(entry: FamilySpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=champion_key(entry.name),
        deps=[model_key(entry.name)],
        group_name="models",
        kinds={"mlflow"},
        owners=[OWNER],
        description=f"The serving {entry.name} model: the MLflow alias 'champion', moved to "
        "the latest challenger only when its promotion gate passed. Edge bundles use it.",
        automation_condition=promote_when_gate_passes(),
        output_required=False,  # a gate waiting for evidence leaves the champion as it is
    )
    def _champion(context: dg.AssetExecutionContext, mlflow: MlflowResource):
        # The blocking check already keeps this step from running after a refusal; the
        # gate tag on the version guards the alias when it is materialized on its own.
        try:
            done = promote(mlflow.registry(), entry.name)
        except WaitingForEvidence as exc:
            context.log.info(f"champion unchanged, waiting for evidence: {exc}")
            return
        except NotPromotable as exc:
            raise dg.Failure(str(exc)) from exc
        context.log.info(f"{done.name}: champion -> v{done.version}")
        yield dg.MaterializeResult(
            metadata={
                "registered_model": done.name,
                "model_version": done.version,
                "previous_champion": done.previous or "none",
                "mlflow_run_id": done.run_id,
                "mlflow_run": mlflow_run_link(done.run_id),
                "mlflow_model": mlflow_model_link(done.name, done.version),
                "gate": done.gate_reason,
            },
            data_version=dg.DataVersion(f"{done.name}/{done.version}"),
        )

    return _champion


def family_model_assets(entries: Iterable[FamilySpec]) -> list[dg.AssetsDefinition]:
    """A challenger (with its blocking gate) and a champion asset per registry entry."""
    entries = list(entries)
    return [*map(challenger_asset, entries), *map(champion_asset, entries)]


model_assets = family_model_assets(FAMILIES.values())
