"""Models: per family a challenger trained in MLflow, a promotion gate, and the champion.

``models/<family>`` runs the hyper-parameter search (MLflow parent run, one child run per
trial), registers the best model as a new version with alias ``challenger`` and evaluates
the current ``champion`` again on the SAME hold-out rows. Its blocking check
``beats_champion`` is the promotion gate (the pattern of Dagster's ``project_ml`` example):
when it fails, ``models/<family>_champion`` does not run and the champion alias stays where
it was. The model code is plain Python in ``mfg_assets.ml``; this module only wires it.

Why not ``dagster-mlflow``: its ``mlflow_tracking`` resource is a legacy function resource
that opens ONE fluent, process-global MLflow run per Dagster run at resource init and only
closes it from the ``end_mlflow_on_run_finished`` op hook (which ``dg.materialize`` and
asset jobs do not attach by default; it also unregisters MLflow's atexit cleanup). That
fits one-run-per-job ops, not a parent run per family with child runs per trial that must
always be closed; so a small ``ConfigurableResource`` hands out an explicit ``MlflowClient``.
"""


import base64
import importlib
import json
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field
from threadpoolctl import threadpool_limits

from mfg_assets.defs.automation import (
    MODELS_FRESHNESS,
    promote_when_gate_passes,
    retrain_on_cadence,
)
from mfg_assets.defs.cost import with_cost
from mfg_assets.defs.features import OWNER, feature_key, read_lineage
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.registry import table
from mfg_assets.ml.registry import (
    CHALLENGER,
    CHAMPION,
    GATE_TAG,
    Decision,
    ModelRegistry,
    promotion_decision,
    registered_name,
)
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
    threads: int = Field(
        default=1, ge=1,
        description="BLAS/OpenMP threads for training. One by default: on a shared host "
        "OpenMP threads spinning against other work make scikit-learn 20x slower.",
    )


@dataclass(frozen=True)
class ModelSpec:
    family: str  # ModelFamily.name: the asset name and the registered model (mfg-<family>)
    module: str  # mfg_assets.ml.<module>, imported when the asset runs (torch is slow)
    features: str  # the feature table it trains on (the module's FEATURE_TABLE)
    kinds: frozenset[str]
    description: str


MODEL_SPECS = (
    ModelSpec(
        "sensor_anomaly", "mfg_assets.ml.anomaly", "features.sensor_windows",
        frozenset({"pytorch", "mlflow"}),
        "Sensor anomaly detector (autoencoder on sensor windows): flags windows whose "
        "reconstruction error exceeds a threshold tuned on validation data.",
    ),
    ModelSpec(
        "failure_forecast", "mfg_assets.ml.forecast", "features.sensor_windows",
        frozenset({"prophet", "mlflow"}),
        "Prophet forecasts of machine health signals, one series per machine and signal: "
        "how soon a degrading machine crosses its failure limit.",
    ),
    ModelSpec(
        "process_yield", "mfg_assets.ml.yield_model", "features.process_units",
        frozenset({"sklearn", "mlflow"}),
        "Process yield model (scikit-learn): predicts a unit's yield from its process "
        "parameters, for set-point tuning and early scrap warnings.",
    ),
    ModelSpec(
        "vision_defect", "mfg_assets.ml.vision", "features.image_dataset",
        frozenset({"pytorch", "mlflow"}),
        "Visual defect classifier (small CNN) on inspection images: ok, scratch, dent, "
        "missing part.",
    ),
)


def model_key(family: str) -> dg.AssetKey:
    return dg.AssetKey(["models", family])


def champion_key(family: str) -> dg.AssetKey:
    return dg.AssetKey(["models", f"{family}_champion"])


def load_family(spec: ModelSpec) -> Any:
    module = importlib.import_module(spec.module)
    declared = (module.FAMILY.name, getattr(module, "FEATURE_TABLE", spec.features))
    if declared != (spec.family, spec.features):
        raise ValueError(f"{spec.module} declares (family, features) {declared}, "
                         f"the asset expects {(spec.family, spec.features)}")
    return module


# -- challenger + gate -----------------------------------------------------------------


def challenger_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    key = model_key(spec.family)

    @dg.asset(
        key=key,
        deps=[feature_key(spec.features)],
        group_name="models",
        kinds=set(spec.kinds),
        owners=[OWNER],
        description=spec.description,
        metadata={"mlflow/registered_model": registered_name(spec.family)},
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
        return train_challenger(context, spec, config, lakehouse, mlflow)

    return _challenger


def train_challenger(
    context: dg.AssetExecutionContext,
    spec: ModelSpec,
    config: TrainConfig,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    module = load_family(spec)
    lake = lakehouse.lake()
    features_spec = table(spec.features)
    version = lake.version(features_spec)
    if version is None:
        raise dg.Failure(f"{spec.features} does not exist yet: materialize "
                         f"{feature_key(spec.features).to_user_string()} first")
    features = lake.read(features_spec, version)  # pinned: the version we record
    data_versions = {spec.features: version, **read_lineage(lake, features_spec, version)}
    registry = mlflow.registry()
    with threadpool_limits(limits=config.threads):
        result = registry.run_search(
            module, features, config.budget, config.seed, data_versions,
            extra_tags={"dagster.run_id": context.run.run_id},
        )
        champion_version, champion_metrics = _champion_on_holdout(context, registry, module,
                                                                  features)
    decision = promotion_decision(module.FAMILY, result.holdout_metrics, champion_metrics,
                                  config.margin)
    registry.record_gate(result.model_name, result.version, decision)
    context.log.info(f"{spec.family} v{result.version}: gate "
                     f"{'passed' if decision.passed else 'refused'}: {decision.reason}")
    failed = [t for t in result.trials if t.error]
    meta: dict[str, Any] = {
        "mlflow_run_id": result.parent_run_id,
        "mlflow_best_trial_run_id": result.best_run_id,
        "registered_model": result.model_name,
        "model_version": result.version,
        "model_artifacts": dg.MetadataValue.path(result.artifact_uri),
        "data_versions": dg.MetadataValue.json(result.data_versions),
        "best_params": dg.MetadataValue.json(_jsonable(result.params)),
        "trials": len(result.trials),
        "trials_failed": len(failed),
        "feature_rows": features.height,
        **{f"holdout/{k}": v for k, v in result.holdout_metrics.items()},
        **{f"validation/{k}": v for k, v in result.metrics.items()},
        "gate": decision.reason,
    }
    for name, png in result.figures.items():
        meta[f"figure/{name.removesuffix('.png')}"] = _png_markdown(name, png)
    return dg.MaterializeResult(
        metadata=meta,
        data_version=dg.DataVersion(f"{result.model_name}/{result.version}"),
        check_results=[_gate_result(decision, result.version, result.holdout_metrics,
                                    champion_version, champion_metrics, config.margin)],
    )


def _champion_on_holdout(
    context: dg.AssetExecutionContext, registry: ModelRegistry, module: Any, features: Any
) -> tuple[str | None, dict[str, float] | None]:
    """The champion's metrics on today's hold-out rows (None, None: no champion yet)."""
    try:
        found = registry.holdout_metrics_of(module, CHAMPION, features)
    except Exception as exc:
        # A champion that cannot score today's features (schema moved on, artifact lost)
        # cannot defend its title: the challenger is then judged on the floors alone.
        context.log.warning(f"champion could not be evaluated on the current hold-out: {exc}")
        return "unevaluable", None
    return (None, None) if found is None else found


def _gate_result(
    decision: Decision,
    version: str,
    challenger: dict[str, float],
    champion_version: str | None,
    champion: dict[str, float] | None,
    margin: float,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=GATE,
        passed=decision.passed,
        metadata={
            "reason": decision.reason,
            "challenger_version": version,
            "champion_version": champion_version or "none",
            "challenger_holdout": dg.MetadataValue.json(challenger),
            "champion_holdout": dg.MetadataValue.json(champion or {}),
            "margin_relative": margin,
        },
    )


def _png_markdown(name: str, png: bytes) -> dg.MetadataValue:
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{name}](data:image/png;base64,{encoded})")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# -- champion --------------------------------------------------------------------------


def champion_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=champion_key(spec.family),
        deps=[model_key(spec.family)],
        group_name="models",
        kinds={"mlflow"},
        owners=[OWNER],
        description=f"The serving {spec.family} model: the MLflow alias 'champion', moved to "
        "the latest challenger only when its promotion gate passed. Edge bundles use it.",
        automation_condition=promote_when_gate_passes(),
    )
    def _champion(context: dg.AssetExecutionContext, mlflow: MlflowResource):
        return promote(context, spec, mlflow.registry())

    return _champion


def promote(
    context: dg.AssetExecutionContext, spec: ModelSpec, registry: ModelRegistry
) -> dg.MaterializeResult:
    """Point ``champion`` at the current challenger, if (and only if) its gate passed.

    The blocking check already keeps this step from running after a refusal; the gate tag
    on the version guards the alias when this asset is materialized on its own.
    """
    name = registered_name(spec.family)
    challenger = registry.version_by_alias(name, CHALLENGER)
    if challenger is None:
        raise dg.Failure(f"{name} has no challenger: materialize models/{spec.family} first")
    if challenger.tags.get(GATE_TAG) != "passed":
        raise dg.Failure(
            f"{name} v{challenger.version} did not pass its promotion gate "
            f"({challenger.tags.get('mfg.gate_reason', 'no verdict recorded')})"
        )
    previous = registry.champion(name)
    registry.set_champion(name, challenger.version)
    context.log.info(f"{name}: champion -> v{challenger.version}")
    return dg.MaterializeResult(
        metadata={
            "registered_model": name,
            "model_version": str(challenger.version),
            "previous_champion": str(previous.version) if previous else "none",
            "mlflow_run_id": challenger.run_id or "",
            "gate": challenger.tags.get("mfg.gate_reason", ""),
        },
        data_version=dg.DataVersion(f"{name}/{challenger.version}"),
    )


challenger_assets = [challenger_asset(spec) for spec in MODEL_SPECS]
champion_assets = [champion_asset(spec) for spec in MODEL_SPECS]
model_assets = [*challenger_assets, *champion_assets]
